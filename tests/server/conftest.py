"""Fixtures of the server tests: a real server on a free loopback port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from server_helpers import RunningServer, running_server


@pytest.fixture
def srv() -> Iterator[RunningServer]:
    with running_server(dev=True) as server:
        yield server
