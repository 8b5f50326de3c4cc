"""Shared test configuration.

``async def`` tests run on asyncio through anyio's pytest plugin; the marking is done by
agentengine's own pytest plugin (``agentengine.testing``), the same kit plugin authors use.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog


@pytest.fixture(autouse=True)
def _restore_structlog_config() -> Iterator[None]:
    # Commands run in-process (click's CliRunner) configure structlog for their "process";
    # no test may leave that behind for the next one.
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)
