"""Shared test configuration: every async test runs on asyncio through anyio's plugin."""

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("anyio") is None and _is_coroutine_test(item):
            item.add_marker(pytest.mark.anyio)


def _is_coroutine_test(item: pytest.Item) -> bool:
    import inspect

    func = getattr(item, "function", None)
    return func is not None and inspect.iscoroutinefunction(func)
