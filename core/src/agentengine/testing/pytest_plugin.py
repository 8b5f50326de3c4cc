"""The ``agentengine`` pytest plugin (the ``pytest11`` entry point): the kit's fixtures, the
``agentengine`` marker and the automatic async marking.

pytest loads it in every test session of an environment where agentengine-core is installed, so
it imports only pytest at load time: the engine is imported when a test uses a fixture.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from agentengine.runtime.factory import ExecutionEngineFactory
    from agentengine.testing.helpers import ContextBuilder, EventRecorder

__all__: list[str] = []


# -- pytest integration ------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    """The ``agentengine_auto_async`` ini option."""
    parser.addini(
        "agentengine_auto_async",
        "run plain `async def` tests with anyio on asyncio (when anyio is installed and "
        "pytest-asyncio is not)",
        type="bool",
        default=True,
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``agentengine`` marker."""
    config.addinivalue_line(
        "markers",
        "agentengine(plugins=[...], load_entrypoints=False, strict_plugins=True, "
        "**factory_kwargs): the plugins and ExecutionEngineFactory arguments of the "
        "engine_factory fixture",
    )


_AUTO_MARKED = "_agentengine_auto_async"


def _auto_async(config: pytest.Config) -> bool:
    """Whether the kit marks plain ``async def`` tests: only when anyio's plugin is there,
    no other async plugin (pytest-asyncio, pytest-trio) is, and anyio is not in auto mode."""
    manager = config.pluginmanager
    if not config.getini("agentengine_auto_async") or not manager.has_plugin("anyio"):
        return False
    if manager.has_plugin("asyncio") or manager.has_plugin("trio"):
        return False
    anyio_mode = config.getoption("anyio_mode", default=None)
    try:
        anyio_mode = anyio_mode or config.getini("anyio_mode")
    except ValueError:  # an anyio without that option
        anyio_mode = None
    return bool(anyio_mode != "auto")


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> None:
    """Mark plain ``async def`` tests for anyio before their items are made (so that they
    request ``anyio_backend`` like tests marked by hand, parametrization included). Tests
    already marked ``anyio`` are left as they are."""
    if not (
        inspect.iscoroutinefunction(obj)
        and isinstance(collector, pytest.Module | pytest.Class)
        and collector.istestfunction(obj, name)
        and _auto_async(collector.config)
    ):
        return
    own = getattr(obj, "pytestmark", [])
    if collector.get_closest_marker("anyio") is not None or any(m.name == "anyio" for m in own):
        return
    pytest.mark.anyio(obj)
    pytest.mark.usefixtures("anyio_backend")(obj)
    setattr(obj, _AUTO_MARKED, True)


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """The engine is built on asyncio: a test the kit marked, whose ``anyio_backend`` is
    anyio's own default (which also tries trio when installed), runs on asyncio only."""
    if not getattr(metafunc.function, _AUTO_MARKED, False):
        return
    defs = getattr(metafunc, "_arg2fixturedefs", {}).get("anyio_backend")
    if defs and getattr(defs[-1].func, "__module__", "") == "anyio.pytest_plugin":
        metafunc.parametrize("anyio_backend", ["asyncio"], scope="module")


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def user_context() -> ContextBuilder:
    """A builder of valid contexts: ``user_context("alice")``, ``user_context()``."""
    from agentengine.testing.helpers import ContextBuilder  # see the module docstring

    return ContextBuilder()


@pytest.fixture
def event_recorder() -> EventRecorder:
    """Every event of ``engine_factory``'s engines; ``event_recorder.by_user["alice"]``."""
    from agentengine.testing.helpers import EventRecorder  # see the module docstring

    return EventRecorder()


@pytest.fixture
def captured_logs() -> Iterator[list[MutableMapping[str, Any]]]:
    """The structlog entries logged during the test."""
    from agentengine.testing.helpers import capture_logs  # see the module docstring

    with capture_logs() as entries:
        yield entries


def _marker_kwargs(request: pytest.FixtureRequest) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    # Closest last: a function's marker overrides its class's and module's.
    for marker in reversed(list(request.node.iter_markers("agentengine"))):
        if marker.args:
            raise pytest.UsageError(
                "@pytest.mark.agentengine takes keyword arguments only: "
                "@pytest.mark.agentengine(plugins=[MyPlugin()], run_timeout=5.0)"
            )
        kwargs.update(marker.kwargs)
    return kwargs


@pytest.fixture
async def make_engine_factory(
    request: pytest.FixtureRequest,
) -> AsyncIterator[Callable[..., ExecutionEngineFactory]]:
    """Build ``ExecutionEngineFactory``s isolated from the environment (no configuration file,
    no environment variables, no entry points unless asked); all are shut down after the
    test. The ``event_recorder`` (when the test uses it) is added to each.

    Plugins load strictly (``strict_plugins=True`` unless given): a plugin that fails to
    import or register (a misspelled hook, a hook that raises) fails the test at once with
    ``PluginLoadError`` and its cause, instead of a missing agent later."""
    # Imported here, not at load time: see the module docstring.
    from agentengine.config import Settings
    from agentengine.runtime.factory import ExecutionEngineFactory

    made: list[ExecutionEngineFactory] = []
    recorder = (
        request.getfixturevalue("event_recorder")
        if "event_recorder" in request.fixturenames
        else None
    )

    def make(**kwargs: Any) -> ExecutionEngineFactory:
        plugins = list(kwargs.pop("plugins", ()))
        if recorder is not None and recorder not in plugins:
            plugins.append(recorder)
        kwargs.setdefault("load_entrypoints", False)
        kwargs.setdefault("strict_plugins", True)
        kwargs.setdefault("config", Settings())
        kwargs.setdefault("environ", {})
        factory = ExecutionEngineFactory(plugins=plugins, **kwargs)
        made.append(factory)
        return factory

    try:
        yield make
    finally:
        for factory in reversed(made):
            await factory.shutdown()


@pytest.fixture
async def engine_factory(
    request: pytest.FixtureRequest, make_engine_factory: Callable[..., ExecutionEngineFactory]
) -> ExecutionEngineFactory:
    """An ``ExecutionEngineFactory`` with the plugins of ``@pytest.mark.agentengine(...)``
    plus the built-ins; shut down after the test."""
    return make_engine_factory(**_marker_kwargs(request))
