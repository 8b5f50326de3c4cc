"""Shared test configuration: every ``async def`` test runs on asyncio through anyio's plugin."""

from __future__ import annotations

import inspect
from typing import Any

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: Any, name: str, obj: Any) -> None:
    # Mark coroutine tests before they are collected, so parametrization sees the marker.
    if (
        collector.funcnamefilter(name)
        and inspect.iscoroutinefunction(obj)
        and not any(m.name == "anyio" for m in getattr(obj, "pytestmark", []))
    ):
        pytest.mark.anyio(obj)
