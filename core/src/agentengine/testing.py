"""The pytest kit for plugin authors, registered as the ``agentengine`` pytest plugin.

Installing ``agentengine-core`` makes these fixtures available in every test session (through
the ``pytest11`` entry point); the helpers are imported from here. This is the only module of
agentengine that imports pytest.

Fixtures
    ``engine_factory``   an ``ExecutionEngineFactory`` with exactly the plugins the test names
                         (``@pytest.mark.agentengine(plugins=[MyPlugin()], **factory_kwargs)``)
                         plus the built-ins; no entry-point loading unless the marker says
                         ``load_entrypoints=True``; no configuration file or environment
                         variables read; shut down after the test. Async tests only.
    ``make_engine_factory``  builds more such factories (``make_engine_factory(plugins=[...])``),
                         all shut down after the test.
    ``user_context``     a builder of valid contexts: ``user_context("alice")``,
                         ``user_context()`` (a fresh user), ``user_context.many(3)``.
    ``event_recorder``   every event of every engine of ``engine_factory``, per user
                         (requesting it adds one observer plugin to the factory).
    ``captured_logs``    the structlog entries logged during the test (a list of dicts).

Helpers
    ``run_agent(factory, agent, input, user=...)``  run once; returns ``(result, events)``.
    ``assert_event_sequence(events, ["agent_started", ...])``  with a readable diff; ``"..."``
                         matches any number of events.
    ``assert_run_invariants(events)``  the per-run protocol guarantees.
    ``assert_isolated(events_by_user)``  no event reached another user; every run is whole.
    ``capture_logs()``   context manager collecting structlog entries.
    ``check_plugin(plugin)`` / ``assert_plugin_conforms(plugin)``  conformance to the hooks.

Plain ``async def`` tests run on asyncio through anyio's pytest plugin when anyio is installed
and no other async plugin (pytest-asyncio, pytest-trio, anyio's auto mode) handles them; tests
already marked ``anyio`` are left alone. Set ``agentengine_auto_async = false`` in the pytest
ini options to mark tests yourself.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import inspect
import itertools
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, MutableMapping, Sequence
from typing import Any, NamedTuple

import pytest
import structlog

from agentengine.config import Settings
from agentengine.conformance import check_plugin
from agentengine.context import UserExecutionContext
from agentengine.engine import RunResult
from agentengine.events import BaseEvent
from agentengine.factory import ExecutionEngineFactory
from agentengine.hookspecs import hookimpl

__all__ = [
    "AgentRun",
    "ContextBuilder",
    "EventRecorder",
    "assert_event_sequence",
    "assert_isolated",
    "assert_plugin_conforms",
    "assert_run_invariants",
    "capture_logs",
    "check_plugin",
    "run_agent",
]

ANY_EVENTS = "..."


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
        "agentengine(plugins=[...], load_entrypoints=False, **factory_kwargs): the plugins and "
        "ExecutionEngineFactory arguments of the engine_factory fixture",
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


# -- contexts --------------------------------------------------------------------------------


class ContextBuilder:
    """Builds valid ``UserExecutionContext``s: ``build("alice")``, ``build()`` for a fresh
    user (``user-1``, ``user-2``, ...), ``build.many(3)``; extra fields go to the context."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)

    def __call__(self, user_id: str | None = None, **fields: Any) -> UserExecutionContext:
        """A context for ``user_id`` (a fresh user id when None)."""
        return UserExecutionContext.for_user(user_id or f"user-{next(self._counter)}", **fields)

    def many(self, count: int, **fields: Any) -> list[UserExecutionContext]:
        """Contexts of ``count`` distinct fresh users."""
        return [self(**fields) for _ in range(count)]


# -- events ----------------------------------------------------------------------------------


class _RecorderExtension:
    plugin_name: str | None = "event_recorder"

    def __init__(self, recorder: EventRecorder) -> None:
        self._recorder = recorder

    def on_event(self, event: BaseEvent) -> None:
        self._recorder.events.append(event)


class EventRecorder:
    """Records every event of every engine of the factories it is a plugin of.

    It is a plugin (an observer extension per engine): ``engine_factory`` adds it when the
    test asks for ``event_recorder``; add it yourself with ``plugins=[recorder]``.
    """

    name = "event_recorder"

    def __init__(self) -> None:
        #: Every event, in the order they were emitted.
        self.events: list[BaseEvent] = []

    @hookimpl
    def agentengine_engine_extensions(self) -> _RecorderExtension:
        """One observer per engine."""
        return _RecorderExtension(self)

    @property
    def by_user(self) -> dict[str, list[BaseEvent]]:
        """Events per user id (the ``user_id`` of each event)."""
        grouped: dict[str, list[BaseEvent]] = {}
        for event in self.events:
            grouped.setdefault(event.user_id, []).append(event)
        return grouped

    @property
    def by_run(self) -> dict[str, list[BaseEvent]]:
        """Events per run id."""
        grouped: dict[str, list[BaseEvent]] = {}
        for event in self.events:
            grouped.setdefault(event.run_id, []).append(event)
        return grouped

    def for_user(self, user_id: str) -> list[BaseEvent]:
        """The events of ``user_id``."""
        return [e for e in self.events if e.user_id == user_id]

    def for_run(self, run_id: str) -> list[BaseEvent]:
        """The events of one run."""
        return [e for e in self.events if e.run_id == run_id]

    def types(self, user_id: str | None = None) -> list[str]:
        """The event types (of ``user_id`` only, when given), in order."""
        return [e.type for e in self.events if user_id is None or e.user_id == user_id]

    def clear(self) -> None:
        """Forget what was recorded."""
        self.events.clear()

    def __len__(self) -> int:
        return len(self.events)


class AgentRun(NamedTuple):
    """What ``run_agent`` returns: unpack it as ``result, events = await run_agent(...)``."""

    result: RunResult
    events: list[BaseEvent]

    @property
    def types(self) -> list[str]:
        """The event types, in order."""
        return [e.type for e in self.events]


async def run_agent(
    factory: ExecutionEngineFactory,
    agent: str,
    input: Mapping[str, Any] | None = None,  # noqa: A002 - mirrors execute_agent
    *,
    user: str | UserExecutionContext = "user-1",
    timeout: float | None = None,
) -> AgentRun:
    """Run ``agent`` once for ``user`` (an id or a context) in a fresh engine of ``factory``,
    cleaned up afterwards; return the result and the run's events."""
    ctx = user if isinstance(user, UserExecutionContext) else UserExecutionContext.for_user(user)
    async with factory.user_execution_engine(ctx) as engine:
        result = await engine.execute_agent(agent, input or {}, timeout=timeout)
    return AgentRun(result, list(result.events))


def _event_types(events: Any) -> list[str]:
    if isinstance(events, RunResult | AgentRun):
        events = events.events
    types = []
    for event in events:
        if isinstance(event, str):
            types.append(event)
        elif isinstance(event, Mapping):
            types.append(str(event.get("type")))
        else:
            types.append(str(getattr(event, "type", event)))
    return types


def _matches(actual: Sequence[str], expected: Sequence[str]) -> bool:
    """``expected`` against ``actual``; ``"..."`` matches any run of events (even none)."""

    @functools.cache
    def match(i: int, j: int) -> bool:
        if j == len(expected):
            return i == len(actual)
        if expected[j] == ANY_EVENTS:
            return match(i, j + 1) or (i < len(actual) and match(i + 1, j))
        return i < len(actual) and actual[i] == expected[j] and match(i + 1, j + 1)

    return match(0, 0)


def _describe_event(event: Any) -> str:
    if isinstance(event, BaseEvent):
        data = event.to_wire()
        detail = {k: v for k, v in data.items() if k not in {"type", "ts", "thread_id", "agent"}}
        return f"{event.type} {detail}"
    return repr(event)


def assert_event_sequence(events: Any, expected: Sequence[str]) -> None:
    """Assert the event types of ``events`` (events, wire dicts, a ``RunResult`` or an
    ``AgentRun``) are ``expected``; ``"..."`` stands for any number of events. On mismatch
    the error shows a diff of the types and the events themselves."""
    actual = _event_types(events)
    if _matches(actual, list(expected)):
        return
    diff = "\n".join(
        difflib.ndiff([str(t) for t in expected], actual)  # "- expected", "+ actual"
    )
    raw = events.events if isinstance(events, RunResult | AgentRun) else events
    shown = "\n".join(f"  {i}. {_describe_event(e)}" for i, e in enumerate(raw, 1))
    raise AssertionError(
        f"event sequence differs (expected {len(expected)} entries, got {len(actual)} events); "
        f"'-' expected, '+' actual:\n{diff}\nactual events:\n{shown}"
    )


def _run_problems(run_id: str, events: Sequence[BaseEvent]) -> list[str]:
    problems = []
    seqs = [e.seq for e in events]
    if seqs != list(range(1, len(events) + 1)):
        problems.append(f"run {run_id}: seq is {seqs}, expected 1..{len(events)} with no gap")
    types = [e.type for e in events]
    if not types or types[0] != "agent_started" or types.count("agent_started") != 1:
        problems.append(f"run {run_id}: agent_started must come first, exactly once: {types}")
    if not types or types[-1] != "agent_completed" or types.count("agent_completed") != 1:
        problems.append(f"run {run_id}: agent_completed must come last, exactly once: {types}")
    if "agent_error" in types and (
        types.count("agent_error") != 1 or types.index("agent_error") != len(types) - 2
    ):
        problems.append(
            f"run {run_id}: agent_error may appear once, just before agent_completed: {types}"
        )
    executing: dict[str, int] = {}
    completed: dict[str, int] = {}
    for event in events:
        call_id = str(getattr(event, "tool_call_id", ""))
        if event.type == "tool_executing":
            executing[call_id] = executing.get(call_id, 0) + 1
        elif event.type == "tool_completed":
            if call_id not in executing:
                problems.append(f"run {run_id}: tool_completed {call_id} before its tool_executing")
            completed[call_id] = completed.get(call_id, 0) + 1
    problems.extend(
        f"run {run_id}: tool call {call_id} has {executing.get(call_id, 0)} "
        f"tool_executing and {completed.get(call_id, 0)} tool_completed (expected 1 each)"
        for call_id in sorted(set(executing) | set(completed))
        if executing.get(call_id) != 1 or completed.get(call_id) != 1
    )
    return problems


def assert_run_invariants(events: Sequence[BaseEvent]) -> None:
    """Assert the protocol guarantees of each run in ``events``: seq 1, 2, 3 ... without gap,
    one ``agent_started`` first, one ``agent_completed`` last, at most one ``agent_error``
    just before it, each ``tool_executing`` with exactly one later ``tool_completed`` of the
    same ``tool_call_id``."""
    runs: dict[str, list[BaseEvent]] = {}
    for event in events:
        runs.setdefault(event.run_id, []).append(event)
    problems = [p for run_id, run in runs.items() for p in _run_problems(run_id, run)]
    if problems:
        raise AssertionError("run invariants violated:\n  " + "\n  ".join(problems))


def assert_isolated(events_by_user: Mapping[str, Sequence[BaseEvent]] | EventRecorder) -> None:
    """Assert that each user's events are that user's only (``user_id`` matches, no run
    appears under two users) and that every run is whole (``assert_run_invariants``).

    ``events_by_user`` maps a user id to the events that user *received* (from a subscription,
    a recorder, results), or is an ``EventRecorder``."""
    if isinstance(events_by_user, EventRecorder):
        events_by_user = events_by_user.by_user
    problems = []
    owner: dict[str, str] = {}
    for user_id, events in events_by_user.items():
        foreign = [e for e in events if e.user_id != user_id]
        if foreign:
            others = sorted({e.user_id for e in foreign})
            problems.append(
                f"user {user_id!r} received {len(foreign)} event(s) of other user(s) {others}: "
                + "; ".join(_describe_event(e) for e in foreign[:3])
            )
        for event in events:
            seen = owner.setdefault(event.run_id, user_id)
            if seen != user_id:
                problems.append(f"run {event.run_id} appears under users {seen!r} and {user_id!r}")
                break
        runs: dict[str, list[BaseEvent]] = {}
        for event in events:
            runs.setdefault(event.run_id, []).append(event)
        for run_id, run in runs.items():
            problems.extend(f"user {user_id!r}: {p}" for p in _run_problems(run_id, run))
    if problems:
        raise AssertionError("isolation violated:\n  " + "\n  ".join(problems))


# -- logs ------------------------------------------------------------------------------------


@contextlib.contextmanager
def capture_logs() -> Iterator[list[MutableMapping[str, Any]]]:
    """Collect structlog entries logged inside the block (dicts with ``event``,
    ``log_level`` and the bound context, ``user_id`` / ``run_id`` of a run included)."""
    capture = structlog.testing.LogCapture()
    previous = structlog.get_config()
    # Every level, whatever the application configured (a CLI run in-process may have set a
    # WARNING filter), and no cached loggers that would bypass the capture.
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, capture],
        wrapper_class=structlog.make_filtering_bound_logger(0),
        cache_logger_on_first_use=False,
    )
    try:
        yield capture.entries
    finally:
        structlog.configure(**previous)


# -- conformance -------------------------------------------------------------------------------


def assert_plugin_conforms(plugin: Any) -> None:
    """``check_plugin`` as an assertion: fails listing every problem."""
    problems = check_plugin(plugin)
    if problems:
        listed = "\n".join(f"  {i}. {p}" for i, p in enumerate(problems, 1))
        raise AssertionError(f"plugin {plugin!r} does not conform:\n{listed}")


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def user_context() -> ContextBuilder:
    """A builder of valid contexts: ``user_context("alice")``, ``user_context()``."""
    return ContextBuilder()


@pytest.fixture
def event_recorder() -> EventRecorder:
    """Every event of ``engine_factory``'s engines; ``event_recorder.by_user["alice"]``."""
    return EventRecorder()


@pytest.fixture
def captured_logs() -> Iterator[list[MutableMapping[str, Any]]]:
    """The structlog entries logged during the test."""
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
    test. The ``event_recorder`` (when the test uses it) is added to each."""
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
