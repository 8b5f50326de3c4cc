"""The kit's helpers that are not assertions: context builders, the event recorder, one-off
runs and log capture. Nothing here imports pytest."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any, NamedTuple

import structlog

from agentengine.context import UserExecutionContext
from agentengine.events import BaseEvent
from agentengine.plugins.hooks import hookimpl
from agentengine.runtime.engine import RunResult
from agentengine.runtime.factory import ExecutionEngineFactory

__all__ = ["AgentRun", "ContextBuilder", "EventRecorder", "capture_logs", "run_agent"]


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
