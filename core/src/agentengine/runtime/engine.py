"""``UserExecutionEngine``: runs agents for exactly one user.

An engine is made only by ``ExecutionEngineFactory``. It holds the user's context, the
extensions plugins gave it (composed once into call chains), and its active runs. Every run is
an asyncio task that emits the run's events in order; whatever happens to the task (success,
an exception, a timeout, a cancellation before or after it started) the run ends with exactly
one terminal ``agent_completed`` event, emitted by ``_finish``, which is idempotent and also
runs as the task's done-callback as a backstop.

Whatever user code raises (any ``BaseException``: ``SystemExit`` and ``KeyboardInterrupt``
included) ends that tool call or run as failed; it never leaves the run's task, where asyncio
would re-raise it out of the event loop. Only a real cancellation is special: a
``CancelledError`` counts as one when the engine asked for it (``_request_cancel``) or the task
was cancelled (``Task.cancelling()``); raised by user code on its own, it is a failure like any
other exception. A run asked to cancel ends ``cancelled`` whatever its agent did with the
cancellation, and one still going ``close_timeout`` seconds later is abandoned (see
``UserExecutionEngine._abandon``). See "Failure semantics" in docs/architecture.md.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import structlog

from agentengine.definitions.agents import check_run_input
from agentengine.definitions.resources import EMPTY_SCOPE, ResourceRegistry
from agentengine.definitions.run import RunContext
from agentengine.definitions.tools import (
    Tool,
    ToolArgumentError,
    ToolRegistry,
    is_mapping,
    not_an_object,
)
from agentengine.errors import (
    EngineClosedError,
    StartPending,
    ToolError,
    UnknownAgentError,
    describe_error,
)
from agentengine.events import (
    BUILD_PARTS,
    EVENT_OVERHEAD,
    AgentCompletedEvent,
    AgentErrorEvent,
    AgentStartedEvent,
    AgentThinkingEvent,
    BaseEvent,
    RunStatus,
    ToolCompletedEvent,
    ToolExecutingEvent,
    ToolStatus,
    event_kind,
    wire_size,
)
from agentengine.ids import random_hex
from agentengine.log import AGENT_VAR, RUN_ID_VAR, USER_ID_VAR
from agentengine.plugins.extensions import ExtensionStack, ToolCall, cancelling
from agentengine.runtime.deadlines import Deadline, DeadlineScheduler, current_task
from agentengine.telemetry import RunTimings, tracing_enabled
from agentengine.wire import flat_dict_size, wire_outcome, wire_text, wire_value

if TYPE_CHECKING:
    from agentengine.context import UserExecutionContext
    from agentengine.definitions.agents import Agent
    from agentengine.runtime.services import EngineServices
    from agentengine.runtime.tracing import RunTrace, RunTracer

__all__ = ["ActiveRun", "PipelineStep", "RunHandle", "RunResult", "UserExecutionEngine"]

_new, _set_dict, _set_fields_set, _set_extra, _set_private, _set_size = BUILD_PARTS
_STARTED = event_kind(AgentStartedEvent)
_THINKING = event_kind(AgentThinkingEvent)
_EXECUTING = event_kind(ToolExecutingEvent)
_TOOL_COMPLETED = event_kind(ToolCompletedEvent)
_ERROR = event_kind(AgentErrorEvent)
_COMPLETED = event_kind(AgentCompletedEvent)
_log = structlog.get_logger("agentengine.runtime.engine")
_now = datetime.now
_perf = time.perf_counter

RunChain = Callable[["RunContext"], Awaitable[Any]]
ToolChain = Callable[["RunContext", ToolCall], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class RunResult:
    """How a run ended. ``events`` are that run's events, in order: all of them, unless they
    outgrew ``[engine] run_event_retention_bytes``; then ``agent_started`` and the newest ones
    (``seq`` tells which are left out; the last one's ``seq`` is how many there were)."""

    run_id: str
    agent: str
    user_id: str
    status: RunStatus
    output: Any = None
    error: str | None = None
    error_type: str | None = None
    events: tuple[BaseEvent, ...] = ()
    duration_ms: float = 0.0

    @property
    def succeeded(self) -> bool:
        """True when the status is ``succeeded``."""
        return self.status is RunStatus.SUCCEEDED


def _result_builder() -> Callable[..., RunResult]:
    """A ``RunResult`` constructor for the run path, taking every field positionally.

    A frozen dataclass's ``__init__`` assigns through ``object.__setattr__``, one call per
    field. Here the fields are plain attribute stores into an object of a class with the same
    slots, which then becomes a ``RunResult`` (``__class__`` assignment, allowed between
    classes of one layout): under half the cost. Same object.
    """

    class Draft:
        __slots__ = RunResult.__slots__

    new = object.__new__

    def build(
        run_id: str,
        agent: str,
        user_id: str,
        status: RunStatus,
        output: Any,
        error: str | None,
        error_type: str | None,
        events: tuple[BaseEvent, ...],
        duration_ms: float,
    ) -> RunResult:
        result: Any = new(Draft)
        result.run_id = run_id
        result.agent = agent
        result.user_id = user_id
        result.status = status
        result.output = output
        result.error = error
        result.error_type = error_type
        result.events = events
        result.duration_ms = duration_ms
        result.__class__ = RunResult
        return result  # type: ignore[no-any-return]

    # Fails at import if RunResult's fields change and build() was not updated with them.
    names: list[Any] = [f.name for f in fields(RunResult)]
    probe = build(*names)
    if [getattr(probe, name) for name in names] != names:
        raise RuntimeError("engine._result_builder does not set every field of RunResult")
    return build


_new_result = _result_builder()


@dataclass(frozen=True, slots=True)
class PipelineStep:
    """One step of ``execute_pipeline``.

    ``input`` is a dict, or a callable receiving the results so far and returning the dict.
    With ``continue_on_failure`` a failed step does not stop the pipeline.
    """

    agent: str
    input: Mapping[str, Any] | Callable[[list[RunResult]], Mapping[str, Any]] = field(
        default_factory=dict
    )
    continue_on_failure: bool = False
    timeout: float | None = None


class ActiveRun(RunContext):
    """A run of this engine: the ``RunContext`` an agent receives, with what the engine needs
    to drive it (its events, its task, its cancellation and its end)."""

    __slots__ = (
        "__weakref__",
        "_agent_name",
        "_base_context",
        "_cancel_requested",
        "_context",
        "_done",
        "_engine",
        "_events",
        "_finished",
        "_head",
        "_inline",
        "_pending_start",
        "_readers",
        "_result",
        "_room",
        "_seq",
        "_started_at",
        "_think_steps",
        "_thread_id",
        "_tool_calls",
        "_trace",
        "_trimmed",
        "_user_id",
        "_waiter",
        "_wire_limit",
        "agent",
        "input",
        "run_id",
        "scope",
        "state",
        "task",
        "timeout",
    )

    agent: Agent  # the registered agent itself (RunContext promises only what it shows)

    def __init__(
        self,
        engine: UserExecutionEngine,
        agent: Agent,
        run_input: dict[str, Any],
        run_id: str,
        context: UserExecutionContext,
        timeout: float,
    ) -> None:
        self._engine = engine
        self.agent = agent
        self.input = run_input
        self.run_id = run_id
        # The run's context is the engine's with this run's id; made on first access, since
        # the hot path needs only the ids cached here.
        self._base_context = context
        self._context: UserExecutionContext | None = context if context.run_id == run_id else None
        self._user_id = context.user_id
        self._thread_id = context.thread_id
        self._agent_name = agent.name
        self.timeout = timeout
        #: Per-run scratch space for extensions (keyed by plugin name, by convention).
        self.state: dict[str, Any] = {}
        #: Request-scoped resources (see ``agentengine.request_scope``): ``await run.scope["db"]``.
        self.scope: Any = EMPTY_SCOPE
        #: The task the run executes in: its own (``start_run``) or the caller's
        #: (``execute_agent``, which runs inline to spare a task per run).
        self.task: asyncio.Task[Any] | None = None
        self._inline = False
        self._cancel_requested = False
        self._done: asyncio.Future[None] | None = None
        # The run's events: the first (agent_started) and the newest, within the engine's
        # run_event_retention_bytes (``_room`` is what is left of it); ``_trimmed`` were dropped
        # after the first, so events[i] (i >= 1) has seq i + 1 + _trimmed. ``_seq``: how many
        # were emitted. ``_readers``: the next seq of each handle being iterated, which keeps
        # the events it has not yielded yet.
        self._events: list[BaseEvent] = []
        self._seq = 0
        self._room: int = engine._run_event_bytes
        self._trimmed = 0
        self._readers: list[list[int]] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._finished = False
        # ``_pending_start`` (set by ``_new_run``, not here: a store less per run) is the
        # run's place under the concurrency limits: None while it holds its slot, the
        # agent_started fields and size while it waits for one (emitted once it is admitted,
        # or before its end if it ends waiting), False once its slot was given back.
        self._pending_start: tuple[dict[str, Any], int] | Literal[False] | None
        self._result: RunResult | None = None
        self._think_steps = 0
        self._tool_calls = 0
        self._started_at = _perf()
        #: The run's spans (``runtime.tracing``), None while tracing is off.
        self._trace: RunTrace | None = None
        #: The size limit of one event's values (``[engine] event_max_bytes``).
        self._wire_limit: int = engine._wire_limit
        # The fields every event of the run carries, in declaration order: an event's fields
        # are a copy of it (cheaper than building the dict) with the type's own fields added,
        # completed by ``_emit``.
        self._head: dict[str, Any] = {
            "type": None,
            "run_id": run_id,
            "user_id": self._user_id,
            "thread_id": self._thread_id,
            "agent": self._agent_name,
            "seq": None,
            "ts": None,
            "cursor": None,
        }

    @property
    def context(self) -> UserExecutionContext:
        """The user's context; its ``run_id`` is this run's."""
        ctx = self._context
        if ctx is None:
            ctx = self._context = self._base_context.model_copy(update={"run_id": self.run_id})
        return ctx

    @property
    def user_id(self) -> str:
        """The user this run belongs to."""
        return self._user_id

    @property
    def cancel_requested(self) -> bool:
        """True once the engine was asked to cancel this run (``handle.cancel()``, cleanup,
        shutdown): the run then ends ``cancelled`` whatever the agent does."""
        return self._cancel_requested

    @property
    def thread_id(self) -> str:
        """The conversation thread."""
        return self._thread_id

    @property
    def events(self) -> list[BaseEvent]:
        """The run's events so far (a copy): all of them, unless they outgrew
        ``[engine] run_event_retention_bytes``; then the first and the newest (``seq`` tells
        which are left out)."""
        return list(self._events)

    def _emit(
        self, kind: tuple[type[BaseEvent], str, set[str]], fields: dict[str, Any], size: int
    ) -> None:
        """Make the event and send it out. ``kind`` is the event class's ``event_kind``
        (``_STARTED`` ...); ``fields`` a copy of the run's ``_head`` with the type's own fields
        added in declaration order, values made wire-safe by ``agentengine.wire`` (their sizes
        add up to ``size``); the head's ``type``, ``seq`` and ``ts`` are set here."""
        # Hot path: no hook lookups here, just the engine's precomposed observer tuple; and
        # events._build written out (a call per event costs more than its body). The head's
        # changing values are set here rather than in a helper of their own: one call less per
        # event. Assigning existing keys keeps their order.
        cls, fields["type"], fields_set = kind
        self._seq = fields["seq"] = self._seq + 1
        fields["ts"] = _now(UTC)
        event = _new(cls)
        _set_dict(event, fields)
        _set_fields_set(event, fields_set)
        _set_extra(event, None)
        _set_private(event, None)
        _set_size(event, size)  # the values' size: see BaseEvent
        self._events.append(event)
        # The run's byte budget counts down: one comparison per event (see _trim).
        room = self._room - size - EVENT_OVERHEAD
        self._room = room
        if room < 0:
            self._trim()
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
        engine = self._engine
        try:
            engine._publish(event)
        except BaseException as exc:  # a sink is plugin code too: never breaks the run
            engine._publish_failed(event, exc)
        if engine._observers:
            engine._observe(event)

    def _trim(self) -> None:
        """The run's events outgrew its budget: drop the oldest after the first, down to half
        the budget (so that trimming is rare: amortised, a constant per event), never the
        newest event nor one a handle being iterated has not yielded yet."""
        events = self._events
        keep_from = self._seq  # the newest event's seq
        if self._readers:
            keep_from = min(keep_from, *(reader[0] for reader in self._readers))
        target = self._engine._run_event_bytes // 2
        room = self._room
        cut = 1
        first_seq = 2 + self._trimmed  # seq of events[1]
        end = len(events)
        while room < target and cut < end and first_seq + cut - 1 < keep_from:
            room += wire_size(events[cut])
            cut += 1
        if cut > 1:
            del events[1:cut]
            self._trimmed += cut - 1
            self._room = room

    def _within_budget(self) -> tuple[BaseEvent, ...]:
        """The first event and the newest within the budget (for the result of a run whose
        events a handle being iterated kept beyond it)."""
        events = self._events
        if len(events) < 3:
            return tuple(events)
        room = self._engine._run_event_bytes - wire_size(events[0])
        start = len(events) - 1  # the newest is always kept
        room -= wire_size(events[start])
        while start > 1 and room - wire_size(events[start - 1]) >= 0:
            start -= 1
            room -= wire_size(events[start])
        return (events[0], *events[start:])

    def tool_names(self) -> list[str]:
        """Names of the tools this run can call by name (see ``RunContext.tool_names``)."""
        return self._engine.tool_names()

    def get_tool(self, name: str) -> Tool | None:
        """The tool ``name`` among ``tool_names()``, or None."""
        return self._engine.get_tool(name)

    async def list_tools(self) -> list[Tool]:
        """Every tool this run can call (see ``RunContext.list_tools``)."""
        return await self._engine.list_tools()

    async def think(self, text: str, *, reasoning: bool = False) -> None:
        """Report progress: emits ``agent_thinking`` (``reasoning=True`` marks a model's
        reasoning rather than text it says)."""
        if self._finished:
            raise EngineClosedError(f"run {self.run_id} has already ended; think() is too late")
        self._think_steps += 1
        fields = self._head.copy()
        if type(text) is str and text.isascii() and len(text) < self._wire_limit:
            size = len(text) + 2  # wire_text's fast path, without its call
        else:
            text, size = wire_text(text, self._wire_limit)
        fields["text"] = text
        fields["step"] = self._think_steps
        fields["reasoning"] = reasoning is True
        self._emit(_THINKING, fields, size)

    async def call_tool(
        self, name: str, args: Mapping[str, Any] | None = None, *, tool: Any = None
    ) -> Any:
        """Call a tool: emits ``tool_executing`` then ``tool_completed`` and returns the result.

        Raises ``ToolError`` (after ``tool_completed`` reported the failure) when the tool is
        unknown, the arguments are invalid, the tool raised or it timed out. ``tool``: call this
        ``Tool`` under ``name`` instead of looking one up (see ``RunContext.call_tool``).
        """
        if self._finished:
            raise EngineClosedError(f"run {self.run_id} has already ended; call_tool() is too late")
        engine = self._engine
        self._tool_calls += 1
        call_id = f"{self.run_id}.{self._tool_calls}"
        # is_mapping's own first check written out for the common dict: a call less per call.
        if type(args) is dict or is_mapping(args):
            raw_args = dict(args)
            bad_args = False
        else:
            raw_args = {}
            bad_args = args is not None  # refused once the tool_executing event is out
        # The name as events show it, made once for both of the call's events.
        shown = name if type(name) is str and name.isascii() else wire_text(name, 256)[0]
        fields = self._head.copy()
        fields["tool"] = shown
        fields["tool_call_id"] = call_id
        size = flat_dict_size(raw_args, self._wire_limit)  # the common args, without wire_value
        if size < 0:
            fields["args"], size = wire_value(raw_args, self._wire_limit)
        else:
            fields["args"] = raw_args
        self._emit(_EXECUTING, fields, size)
        started = _perf()
        if self._trace is not None:
            self._trace.start_tool(call_id, shown)
        if tool is None:
            tool = engine._get_tool(name)
        if tool is None:
            try:
                tool = await engine._resolve_tool(name)
            except BaseException as exc:  # a resolver (an extension) failed: report it, like a tool
                if isinstance(exc, asyncio.CancelledError) and cancelling(self):
                    self._complete_tool(
                        shown, call_id, ToolStatus.CANCELLED, None, "cancelled", started
                    )
                    raise
                message = f"looking up tool {name!r} failed: {describe_error(exc)}"
                self._complete_tool(
                    shown, call_id, ToolStatus.ERROR, None, message, started, type(exc).__name__
                )
                raise ToolError(name, "error", message, call_id) from exc
        if tool is None:
            message = (
                f"no tool named {name!r}; available tools: "
                f"{', '.join(engine.tool_names()) or 'none'}"
            )
            self._complete_tool(shown, call_id, ToolStatus.ERROR, None, message, started)
            raise ToolError(name, "error", message, call_id)
        try:
            if bad_args:
                raise not_an_object(f"arguments for tool {name!r}", args)
            validated = tool.validate_args(raw_args)
        except ToolArgumentError as exc:
            self._complete_tool(
                shown, call_id, ToolStatus.ERROR, None, str(exc), started, type(exc).__name__
            )
            raise ToolError(name, "error", str(exc), call_id) from None
        limit = tool.timeout if tool.timeout is not None else engine._tool_timeout
        try:
            with Deadline(engine._deadlines, limit) as deadline:  # a call less than .deadline()
                chain = engine._tool_chain
                if chain is _invoke_tool:  # no middleware: skip the ToolCall and a frame
                    result = await tool.invoke(self, validated)
                else:
                    result = await chain(self, ToolCall(tool, call_id, validated))
        except TimeoutError as exc:
            if deadline.expired():
                message = f"tool {name!r} timed out after {limit:g}s"
                self._complete_tool(shown, call_id, ToolStatus.TIMEOUT, None, message, started)
                raise ToolError(name, "timeout", message, call_id) from None
            message = describe_error(exc)
            self._complete_tool(
                shown, call_id, ToolStatus.ERROR, None, message, started, type(exc).__name__
            )
            raise ToolError(name, "error", message, call_id) from exc
        except asyncio.CancelledError as exc:
            if cancelling(self):  # a real cancellation (a deadline's was turned into TimeoutError)
                self._complete_tool(
                    shown, call_id, ToolStatus.CANCELLED, None, "cancelled", started
                )
                raise
            message = describe_error(exc)  # raised by the tool itself: a failure like any other
            self._complete_tool(
                shown, call_id, ToolStatus.ERROR, None, message, started, "CancelledError"
            )
            raise ToolError(name, "error", message, call_id) from exc
        except ToolError as exc:
            self._complete_tool(shown, call_id, ToolStatus.ERROR, None, exc.message, started)
            raise ToolError(name, "error", exc.message, call_id) from exc
        except BaseException as exc:  # SystemExit, KeyboardInterrupt ...: ends the call only
            message = describe_error(exc)
            self._complete_tool(
                shown, call_id, ToolStatus.ERROR, None, message, started, type(exc).__name__
            )
            raise ToolError(name, "error", message, call_id) from exc
        self._complete_tool(shown, call_id, ToolStatus.OK, result, None, started)
        return result

    def _complete_tool(
        self,
        shown: str,
        call_id: str,
        status: ToolStatus,
        result: Any,
        error: str | None,
        started: float,
        error_type: str | None = None,
    ) -> None:
        """Emit ``tool_completed``; ``shown`` is the tool's name made wire-safe; ``error_type``
        the type of the exception that failed the call, where there was one (for its span)."""
        duration_ms = (_perf() - started) * 1000.0
        if self._trace is not None:
            self._trace.finish_tool(call_id, status.value, error, error_type, duration_ms)
        on_tool = self._engine._timings.tool_finished
        if on_tool is not None:
            on_tool(shown, status.value, duration_ms / 1000.0)
        if self._finished:  # the run already ended (engine cleanup); nothing may follow
            return
        fields = self._head.copy()
        fields["tool"] = shown
        fields["tool_call_id"] = call_id
        fields["status"] = status
        fields["result"], fields["error"], size = wire_outcome(result, error, self._wire_limit)
        fields["duration_ms"] = duration_ms
        self._emit(_TOOL_COMPLETED, fields, size)

    def _request_cancel(self) -> None:
        """Cancel the run on behalf of the engine (handle.cancel, cleanup, shutdown).

        The run then ends ``cancelled`` whatever the agent does with the cancellation; if it
        has not ended ``close_timeout`` seconds later it is abandoned (``_abandon``)."""
        task = self.task
        if self._finished or self._cancel_requested or task is None or task.done():
            return
        self._cancel_requested = True
        task.cancel()
        grace = self._engine._services.settings.close_timeout
        # A weak reference: the timer must not keep a finished run (and its engine) alive.
        task.get_loop().call_later(grace, _abandon_later, weakref.ref(self), grace)

    async def _wait_finished(self) -> None:
        """Wait until the terminal event was emitted; cancelling the waiter spares the run."""
        if self._finished:
            return
        if self._done is None:
            self._done = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._done)

    def __repr__(self) -> str:
        return f"<RunContext {self.run_id} agent={self.agent.name!r} user={self.user_id!r}>"


def _no_error_count(plugin_name: str) -> None:
    """The empty stack has no extension that could fail."""


#: The extensions of an engine that has none (closing it does nothing).
_NO_EXTENSIONS = ExtensionStack((), user_id="", close_timeout=0.0, count_error=_no_error_count)


def _abandon_later(ref: weakref.ref[ActiveRun], grace: float) -> None:
    run = ref()
    if run is not None and not run._finished:
        run._engine._abandon(run, grace)


def _requested_cancel(run: ActiveRun) -> tuple[RunStatus, None, str, str]:
    """The outcome of a run the engine asked to cancel, however its agent reacted. The
    engine's own cancellation is handled here, so it must not stay counted on the task (for
    an inline run, that is the caller's task)."""
    task = run.task
    if task is not None and task.cancelling():
        task.uncancel()
    return RunStatus.CANCELLED, None, "the run was cancelled", "CancelledError"


class RunHandle:
    """A started run: iterate it for its events (live), ``cancel()`` it, await ``result()``."""

    __slots__ = ("_run",)

    def __init__(self, run: ActiveRun) -> None:
        self._run = run

    @property
    def run_id(self) -> str:
        """The run's id."""
        return self._run.run_id

    @property
    def agent(self) -> str:
        """The agent's name."""
        return self._run.agent.name

    @property
    def done(self) -> bool:
        """True once the terminal event was emitted."""
        return self._run._finished

    async def __aiter__(self) -> AsyncIterator[BaseEvent]:
        """The run's events from the first, live; ends after ``agent_completed``. The run
        keeps the events an iteration has not yielded yet, whatever its
        ``run_event_retention_bytes``, so an iteration begun before the run outgrew that gets
        every event; one begun later gets ``agent_started``, then the events from the oldest
        retained on (``seq`` shows the ones left out, and a warning is logged)."""
        run = self._run
        reader = [1]  # the next seq to yield; the run keeps the events from it on
        readers = run._readers
        if readers is None:
            readers = run._readers = []
        readers.append(reader)
        try:
            while True:
                seq = reader[0]
                events = run._events
                index = 0 if seq == 1 else seq - 1 - run._trimmed
                if index < 1 and seq > 1:
                    index = 1  # dropped before this iteration began
                    if len(events) > 1:
                        _log.warning(
                            "run events were dropped before the handle was iterated",
                            run_id=run.run_id,
                            missed=events[1].seq - seq,
                            run_event_retention_bytes=run._engine._run_event_bytes,
                        )
                if index < len(events):
                    event = events[index]
                    reader[0] = event.seq + 1
                    yield event
                    if event.terminal:
                        return
                    continue
                if run._finished:
                    return
                if run._waiter is None:
                    run._waiter = asyncio.get_running_loop().create_future()
                await asyncio.shield(run._waiter)
        finally:
            readers.remove(reader)

    async def cancel(self) -> None:
        """Cancel the run and wait until it has ended (status ``cancelled``)."""
        self.cancel_nowait()
        await self.wait()

    def cancel_nowait(self) -> None:
        """Request cancellation without waiting."""
        self._run._request_cancel()

    async def wait(self) -> None:
        """Wait until the run has ended, without cancelling it if the waiter is cancelled."""
        await self._run._wait_finished()

    async def result(self) -> RunResult:
        """Wait for the run to end; return its ``RunResult``."""
        await self.wait()
        result = self._run._result
        assert result is not None  # _finish always ran once the task is done
        return result

    def __repr__(self) -> str:
        return f"<RunHandle {self.run_id} agent={self.agent!r}>"


FACTORY_ONLY = object()


class UserExecutionEngine:
    """Runs agents for one user. Create it with ``ExecutionEngineFactory``.

    ``execute_agent`` runs an agent to the end and returns its ``RunResult``; ``start_run``
    returns a ``RunHandle`` to stream the events; ``execute_pipeline`` runs agents in sequence.
    """

    __slots__ = (
        "__weakref__",
        "_active",
        "_closed",
        "_deadlines",
        "_extension_stack",
        "_extensions",
        "_get_agent",
        "_get_tool",
        "_observers",
        "_publish",
        "_run_chain",
        "_run_event_bytes",
        "_run_timeout",
        "_services",
        "_timings",
        "_tool_chain",
        "_tool_listers",
        "_tool_resolvers",
        "_tool_timeout",
        "_tools",
        "_tracer",
        "_used_context_run_id",
        "_wire_limit",
        "context",
        "created_at",
        "engine_id",
        "last_used",
        "stats",
    )

    _active: dict[str, ActiveRun]
    _closed: bool
    _deadlines: DeadlineScheduler
    _extension_stack: ExtensionStack
    _extensions: tuple[Any, ...]
    _services: EngineServices
    _observers: tuple[tuple[str, Callable[[BaseEvent], None]], ...]
    _publish: Callable[[BaseEvent], None]
    _run_chain: RunChain
    _run_event_bytes: int
    _run_timeout: float
    _tool_chain: ToolChain
    _tool_resolvers: tuple[Callable[[str], Awaitable[Tool | None]], ...]
    _tool_listers: tuple[Callable[[], Awaitable[Iterable[Tool]]], ...]
    _timings: RunTimings
    _tool_timeout: float
    _tools: ToolRegistry | _LayeredTools
    _tracer: RunTracer | None
    _get_agent: Callable[[str], Agent | None]
    _get_tool: Callable[[str], Tool | None]
    _used_context_run_id: bool
    _wire_limit: int
    context: UserExecutionContext
    created_at: float
    engine_id: str
    last_used: float
    stats: list[int]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError(
            "UserExecutionEngine cannot be constructed directly; create it with "
            "ExecutionEngineFactory: `async with factory.user_execution_engine(ctx) as engine:` "
            "or `engine = await factory.create_for_user(ctx)`"
        )

    @classmethod
    def from_services(
        cls, token: object, services: EngineServices, context: UserExecutionContext
    ) -> UserExecutionEngine:
        """The factory's way to make an engine (``token`` is ``FACTORY_ONLY``): everything the
        engine uses of its factory comes through ``services``."""
        if token is not FACTORY_ONLY:
            raise TypeError("UserExecutionEngine is created only by ExecutionEngineFactory")
        self = object.__new__(cls)
        self._services = services
        self.context = context
        self.engine_id = random_hex()
        # Read once here, what the run path needs: a pydantic model's attributes cost several
        # times a slot's, and each services attribute would be one more lookup per use.
        settings = services.settings
        self._run_timeout = settings.run_timeout
        self._tool_timeout = settings.tool_timeout
        self._wire_limit = settings.event_max_bytes
        self._run_event_bytes = settings.run_event_retention_bytes
        self._tools = services.tools
        self._get_tool = services.tools.getter()
        self._get_agent = services.agents.getter()
        self._deadlines = services.deadlines
        self._publish = services.publish
        self._timings = services.timings
        # Tracing is decided once per engine: the run path then tests this against None.
        self._tracer = _run_tracer(settings.trace_user_ids) if tracing_enabled() else None
        self._tool_resolvers = ()
        self._tool_listers = ()
        self._extension_stack = _NO_EXTENSIONS
        self._extensions = ()
        self._observers = ()
        self._run_chain = _call_agent
        self._tool_chain = _invoke_tool
        self._active = {}
        self._closed = False
        self._used_context_run_id = False
        self.created_at = time.monotonic()
        self.last_used = self.created_at
        self.stats = [0, 0, 0, 0, 0]  # total, succeeded, failed, timed_out, cancelled
        return self

    # -- composition (once per engine) ---------------------------------------------------------

    def install_extensions(self, stack: ExtensionStack) -> None:
        """Take ``stack`` (started) as this engine's extensions and read its composed chains
        once. Called by the factory that made the engine, before the engine runs anything."""
        self._extension_stack = stack
        self._extensions = stack.extensions
        chains = stack.compose(_call_agent, _invoke_tool)
        self._run_chain = chains.run
        self._tool_chain = chains.tool
        self._observers = chains.observers
        self._tool_resolvers = chains.resolvers
        self._tool_listers = chains.listers
        if chains.tools:
            self._tools = _LayeredTools(chains.tools, self._services.tools)
            self._get_tool = self._tools.get

    def defer_extensions(self, stack: ExtensionStack) -> None:
        """Start ``stack`` at this engine's first run (called by the factory, for
        ``create_for_user_sync``).

        Until then the agent lookup of ``_new_run`` raises ``StartPending``, which the run
        entry points handle by awaiting the start and creating the run again: a try block
        costs a run nothing, so the run path tests nothing about how the engine was made.
        Concurrent first runs wait for the same start; a failed start fails that run's call
        and cleans the engine up, as ``create_for_user`` would have refused it."""
        get_agent = self._get_agent
        user_id = self.context.user_id
        lock = asyncio.Lock()

        async def start() -> None:
            async with lock:
                if self._get_agent is get_agent:  # started by a concurrent first run
                    return
                self._get_agent = get_agent
                if self._closed:
                    raise EngineClosedError(
                        f"engine of user {user_id!r} was cleaned up before it started"
                    )
                try:
                    await stack.start(functools.partial(self.install_extensions, stack))
                except BaseException:
                    await self.cleanup()
                    raise
                if self._closed:  # cleaned up while starting: close what just started
                    await stack.close()
                    raise EngineClosedError(
                        f"engine of user {user_id!r} was cleaned up while starting"
                    )

        def pending(name: str) -> Agent | None:
            raise StartPending(start)

        self._extension_stack = stack
        self._get_agent = pending

    # -- tools ------------------------------------------------------------------------------

    async def _resolve_tool(self, name: str) -> Tool | None:
        for resolve in self._tool_resolvers:
            found = await resolve(name)
            if found is not None:
                return found
        return None

    @property
    def resources(self) -> ResourceRegistry:
        """The scoped resources plugins declared (the factory's ``resources``)."""
        return self._services.resources

    def tool_names(self) -> list[str]:
        """Names of the tools this engine's agents can call (shared and per-user)."""
        return self._tools.names()

    def get_tool(self, name: str) -> Tool | None:
        """The tool ``name`` as this engine sees it, or None."""
        return self._tools.get(name)

    async def list_tools(self) -> list[Tool]:
        """Every tool this engine's runs can call, by name: the registered ones, the engine's
        own, and those the extensions resolve at call time and can list (the user's MCP tools,
        opening their sessions). Sorted by name; a name found twice is the one a call gets."""
        found = {name: tool for name in self._tools.names() if (tool := self._tools.get(name))}
        for list_tools in self._tool_listers:
            for tool in await list_tools():
                found.setdefault(tool.name, tool)
        return [found[name] for name in sorted(found)]

    # -- events -----------------------------------------------------------------------------

    def _publish_failed(self, event: BaseEvent, exc: BaseException) -> None:
        self._services.count_error("sink")
        _log.error(
            "event sink failed to publish; the event stays in the run's result",
            event_type=event.type,
            seq=event.seq,
            error=describe_error(exc),
        )

    def _observe(self, event: BaseEvent) -> None:
        for plugin_name, observe in self._observers:
            try:
                observe(event)
            except BaseException as exc:  # CancelledError, SystemExit ... included: isolated
                self._services.count_error(plugin_name)
                _log.error(
                    "event observer raised; skipped",
                    plugin=plugin_name,
                    event_type=event.type,
                    error=describe_error(exc),
                )

    # -- runs -------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True after ``cleanup()``."""
        return self._closed

    @property
    def user_id(self) -> str:
        """The user this engine runs for."""
        return self.context.user_id

    def _check_open(self) -> None:
        if self._closed:
            raise EngineClosedError(
                f"engine of user {self.context.user_id!r} was cleaned up; create a new one with "
                "factory.create_for_user(ctx)"
            )

    def _resolve_agent(self, name: str) -> Agent:
        found = self._services.agents.get(name)
        if found is None:
            raise UnknownAgentError(name, self._services.agents.names())
        return found

    def validate_input(self, agent: str, run_input: Mapping[str, Any] | None) -> dict[str, Any]:
        """Check ``run_input`` against the agent's signature without running it.

        Raises ``UnknownAgentError`` or ``ToolArgumentError`` (a ValueError).
        """
        return self._resolve_agent(agent).validate_input(run_input)

    def _new_run(
        self,
        agent: str,
        run_input: Mapping[str, Any] | None,
        timeout: float | None,
        run_id: str | None,
    ) -> ActiveRun:
        # _check_open's and _resolve_agent's common case written out: two calls less per run.
        if self._closed:
            self._check_open()  # raises
        found = self._get_agent(agent)
        if found is None:
            found = self._resolve_agent(agent)  # raises UnknownAgentError
        ctx = self.context
        if (
            run_id is None
            and not self._used_context_run_id
            and self._services.claim_run_id(ctx.user_id, ctx.run_id)
        ):
            # The context's run id names the engine's first run, unless another engine of the
            # user already used it (one context reused for several engines): ids stay unique.
            self._used_context_run_id = True
            run_id = ctx.run_id
        elif run_id is None:
            run_id = "run-" + random_hex()  # new_id("run") written out: a call less per run
        if run_id in self._active:
            raise ValueError(f"run id {run_id!r} is already active on this engine; use a new one")
        # is_mapping's own first check written out for the common dict: a call less per run.
        given = dict(run_input) if type(run_input) is dict or is_mapping(run_input) else {}
        run = ActiveRun(self, found, given, run_id, ctx, timeout or self._run_timeout)
        self.last_used = time.monotonic()
        self.stats[0] += 1
        self._active[run_id] = run
        # agent_started marks the start of the run's execution: it goes out as the run is
        # admitted under the user's limit, before the run executes at all (so that even a run
        # cancelled before its first step has its first event). With a slot free that is now;
        # otherwise once the run's turn comes (``_drive``), so a user's events show the limit
        # holding.
        fields = run._head.copy()
        size = flat_dict_size(given, run._wire_limit)  # the common input, without wire_value
        if size < 0:
            fields["input"], size = wire_value(given, run._wire_limit)
        else:
            fields["input"] = given
        tracer = self._tracer
        if tracer is not None:  # the run's span starts as it is accepted, before its first event
            run._trace = tracer.start_run(found.name, run_id, ctx.thread_id, ctx.user_id)
        limiter = self._services.limiter
        if not limiter.try_acquire(ctx.user_id):
            run._pending_start = (fields, size)
            return run
        run._pending_start = None
        try:
            run._emit(_STARTED, fields, size)
        except BaseException as exc:
            # The run never starts: leave no run without a task in the active set.
            del self._active[run_id]
            self.stats[0] -= 1
            run._pending_start = False
            limiter.release(ctx.user_id)
            if run._trace is not None:
                run._trace.finish("failed", 0, describe_error(exc), type(exc).__name__)
            raise
        return run

    async def start_run(
        self,
        agent: str,
        input: Mapping[str, Any] | None = None,  # noqa: A002 - the contract's name
        *,
        timeout: float | None = None,
        run_id: str | None = None,
    ) -> RunHandle:
        """Start ``agent`` with ``input`` (keyword arguments of the agent) in its own task;
        return its handle. ``timeout`` is the whole-run deadline (the factory's ``run_timeout``
        by default)."""
        try:
            run = self._new_run(agent, input, timeout, run_id)
        except StartPending as pending:  # made without awaiting: start the extensions first
            await pending.start()
            run = self._new_run(agent, input, timeout, run_id)
        task = asyncio.get_running_loop().create_task(
            self._drive(run, input), name=f"agentengine-run-{run.run_id}"
        )
        run.task = task
        task.add_done_callback(functools.partial(self._on_task_done, run))
        return RunHandle(run)

    async def execute_agent(
        self,
        agent: str,
        input: Mapping[str, Any] | None = None,  # noqa: A002
        *,
        timeout: float | None = None,
        run_id: str | None = None,
    ) -> RunResult:
        """Run ``agent`` to the end and return its ``RunResult``; a failed run is a result with
        its ``status``, not an exception.

        The run executes inline, in the caller's task (no task per run). Cancelling the caller
        cancels the run: its terminal event is emitted, then ``CancelledError`` propagates.
        """
        try:
            run = self._new_run(agent, input, timeout, run_id)
        except StartPending as pending:  # made without awaiting: start the extensions first
            await pending.start()
            run = self._new_run(agent, input, timeout, run_id)
        run.task = current_task(asyncio.get_running_loop())
        run._inline = True
        await self._drive(run, input)
        result = run._result
        assert result is not None  # _drive always finishes the run
        return result

    async def execute_pipeline(
        self,
        steps: Iterable[PipelineStep | str | tuple[str, Mapping[str, Any]]],
        *,
        timeout: float | None = None,
    ) -> list[RunResult]:
        """Run agents in sequence; stop at the first failed step unless it allows failure.

        Returns the results of the steps that ran.
        """
        results: list[RunResult] = []
        for raw in steps:
            step = _as_step(raw)
            step_input = step.input(results) if callable(step.input) else step.input
            result = await self.execute_agent(
                step.agent, step_input, timeout=step.timeout or timeout
            )
            results.append(result)
            if not result.succeeded and not step.continue_on_failure:
                break
        return results

    async def _drive(self, run: ActiveRun, raw_input: Mapping[str, Any] | None) -> None:
        # What bind_contextvars(user_id=..., run_id=..., agent=...) does, at a sixth the cost.
        user_token = USER_ID_VAR.set(run._user_id)
        run_token = RUN_ID_VAR.set(run.run_id)
        agent_token = AGENT_VAR.set(run._agent_name)
        trace = run._trace
        trace_token = trace.attach() if trace is not None else None
        status = RunStatus.FAILED
        output: Any = None
        error: str | None = None
        error_type: str | None = None
        limiter = self._services.limiter
        user_id = run._user_id
        propagate: BaseException | None = None
        try:
            # Made directly rather than by .deadline(): a call less per run.
            with Deadline(self._deadlines, run.timeout, run.task) as deadline:
                pending = run._pending_start
                if pending:  # the user was at the limit: wait for the run's turn
                    await limiter.acquire(user_id)
                    run._pending_start = None
                try:
                    if pending:
                        run._emit(_STARTED, *pending)
                    if raw_input is not None and type(raw_input) is not dict:  # a call less
                        check_run_input(raw_input, f"input for agent {run.agent.name!r}")
                    run.input = run.agent.validate_input(run.input)
                    chain = self._run_chain
                    if chain is _call_agent:  # no middleware: call the agent directly
                        output = await run.agent.func(run, **run.input)
                    else:
                        output = await chain(run)
                finally:
                    run._pending_start = False
                    limiter.release(user_id)
            if run._cancel_requested:  # the agent swallowed the cancellation: it still wins
                status, output, error, error_type = _requested_cancel(run)
            else:
                status = RunStatus.SUCCEEDED
        except TimeoutError as exc:
            if run._cancel_requested:
                status, output, error, error_type = _requested_cancel(run)
            elif deadline.expired():
                status = RunStatus.TIMED_OUT
                error = f"run exceeded its deadline of {run.timeout:g}s"
                error_type = "TimeoutError"
            else:
                error, error_type = describe_error(exc), type(exc).__name__
        except asyncio.CancelledError as exc:
            if run._cancel_requested:
                status, output, error, error_type = _requested_cancel(run)
            elif cancelling():
                status = RunStatus.CANCELLED
                error, error_type = "the run was cancelled", "CancelledError"
                if run._inline:
                    propagate = exc  # the caller itself was cancelled: it must see that
            else:  # raised by user code, not a cancellation: a failure like any other
                error, error_type = describe_error(exc), "CancelledError"
                _log.warning("run failed", error=error, error_type=error_type)
        except BaseException as exc:  # SystemExit, KeyboardInterrupt ...: ends the run only
            if run._cancel_requested:
                status, output, error, error_type = _requested_cancel(run)
            else:
                error, error_type = describe_error(exc), type(exc).__name__
                _log.warning("run failed", error=error, error_type=error_type)
        finally:
            self._finish(run, status, output, error, error_type)
            AGENT_VAR.reset(agent_token)
            RUN_ID_VAR.reset(run_token)
            USER_ID_VAR.reset(user_token)
            if trace is not None:
                trace.detach(trace_token)
        if propagate is not None:
            raise propagate

    def _on_task_done(self, run: ActiveRun, task: asyncio.Task[None]) -> None:
        # Backstop: a task cancelled before its first step never ran _drive's body.
        if run._pending_start is None:  # it holds its slot: give it back
            run._pending_start = False
            self._services.limiter.release(run._user_id)
        if not run._finished:
            if task.cancelled():
                self._finish(
                    run, RunStatus.CANCELLED, None, "the run was cancelled", "CancelledError"
                )
            else:
                exc = task.exception()
                self._finish(
                    run,
                    RunStatus.FAILED,
                    None,
                    describe_error(exc) if exc else "the run ended unexpectedly",
                    type(exc).__name__ if exc else "RuntimeError",
                )
        if not task.cancelled():
            task.exception()  # mark retrieved; _drive never lets one escape

    def _abandon(self, run: ActiveRun, grace: float) -> None:
        """End a run that was asked to cancel ``grace`` seconds ago and is still going (its
        agent ignores cancellation): its terminal event says so (status ``cancelled``), the
        engine forgets it, and its task is left to end on its own. Until then the task keeps
        its concurrency slot, and its further ``think``/``call_tool`` raise
        ``EngineClosedError``."""
        if run._finished:
            return
        _log.error(
            "run did not stop after being cancelled; abandoned",
            user_id=run._user_id,
            run_id=run.run_id,
            agent=run._agent_name,
            close_timeout=grace,
        )
        self._finish(
            run,
            RunStatus.CANCELLED,
            None,
            f"the run was cancelled but did not stop within {grace:g}s; it was abandoned",
            "CancelledError",
        )

    def _finish(
        self,
        run: ActiveRun,
        status: RunStatus,
        output: Any,
        error: str | None,
        error_type: str | None,
    ) -> None:
        """Emit the terminal events exactly once and record the result."""
        if run._finished:
            return
        pending = run._pending_start
        if pending:  # it ended while waiting for its slot: it still gets its start
            run._pending_start = False
            run._emit(_STARTED, *pending)
        if status is not RunStatus.SUCCEEDED and status is not RunStatus.CANCELLED:
            fields = run._head.copy()
            fields["error"], size = wire_text(error or "", run._wire_limit)
            fields["error_type"] = wire_text(error_type or "Error", 256)[0]
            run._emit(_ERROR, fields, size)
        duration_ms = (_perf() - run._started_at) * 1000.0
        fields = run._head.copy()
        fields["status"] = status
        # The event carries the wire-safe outcome; the RunResult below keeps the agent's own.
        fields["output"], fields["error"], size = wire_outcome(output, error, run._wire_limit)
        fields["duration_ms"] = duration_ms
        run._emit(_COMPLETED, fields, size)
        run._finished = True
        if run._waiter is not None or run._done is not None:  # only when someone waits
            for fut in (run._waiter, run._done):
                if fut is not None and not fut.done():
                    fut.set_result(None)
        run._result = _new_result(
            run.run_id,
            run._agent_name,
            run._user_id,
            status,
            output,
            error,
            error_type,
            tuple(run._events) if run._room >= 0 else run._within_budget(),
            duration_ms,
        )
        self._active.pop(run.run_id, None)
        self.last_used = time.monotonic()
        stats = self.stats
        stats[_STAT_INDEX[status]] += 1
        self._services.record_run(status, duration_ms)
        if run._trace is not None:
            run._trace.finish(status.value, run._seq, error, error_type)
        on_run = self._timings.run_finished
        if on_run is not None:
            on_run(run._agent_name, status.value, duration_ms / 1000.0)

    # -- introspection and lifecycle ----------------------------------------------------------

    def get_execution_stats(self) -> dict[str, Any]:
        """Counts of this engine's runs: total, succeeded, failed, timed_out, cancelled, active."""
        total, succeeded, failed, timed_out, cancelled = self.stats
        return {
            "user_id": self.context.user_id,
            "engine_id": self.engine_id,
            "total": total,
            "succeeded": succeeded,
            "failed": failed,
            "timed_out": timed_out,
            "cancelled": cancelled,
            "active": len(self._active),
            "closed": self._closed,
        }

    @property
    def running(self) -> int:
        """How many runs are in progress."""
        return len(self._active)

    def active_runs(self) -> list[RunHandle]:
        """Handles of the runs in progress."""
        return [RunHandle(run) for run in self._active.values()]

    async def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no run is active (at most ``timeout`` seconds); True if idle."""
        return await wait_runs(self.active_runs(), timeout)

    async def cleanup(self) -> None:
        """Cancel active runs (each still ends with its terminal event; one still going
        ``close_timeout`` seconds later is abandoned), close extensions in reverse order (each
        ``close()`` given ``close_timeout`` seconds), and release the engine. Idempotent; later
        runs raise ``EngineClosedError``."""
        if self._closed:
            return
        self._closed = True
        handles = self.active_runs()
        for handle in handles:
            handle.cancel_nowait()
        await wait_runs(handles, None)  # bounded: a cancel arms the abandon timer
        await self._extension_stack.close()
        # Drop the references: plugins may track their extensions weakly.
        self._extension_stack = _NO_EXTENSIONS
        self._extensions = ()
        self._observers = ()
        self._run_chain = _call_agent
        self._tool_chain = _invoke_tool
        self._tool_resolvers = ()
        self._tool_listers = ()
        self._services.release(self)

    async def shutdown(self) -> None:
        """The same as ``cleanup()`` (the name older engines used)."""
        await self.cleanup()

    # -- legacy constructors (see agentengine.legacy and docs/migration.md) ---------------------

    @classmethod
    def create_from_legacy(
        cls,
        registry: Any,
        websocket_bridge: Any = None,
        user_context: UserExecutionContext | None = None,
        *,
        factory: Any = None,  # an ExecutionEngineFactory (above this module)
    ) -> UserExecutionEngine:
        """Deprecated: an engine from the old ``(registry, websocket_bridge, user_context)``
        arguments, made by ``factory`` (the process default when None). Without a bridge the
        events go to the factory's sink; without a context an anonymous user is made (marked
        ``anonymous`` in its metadata). Use ``factory.create_for_user(ctx)`` instead."""
        engine: UserExecutionEngine = _legacy_constructors().engine_classmethod(
            "create_from_legacy", registry, websocket_bridge, user_context, factory
        )
        return engine

    @classmethod
    def from_registry(
        cls,
        registry: Any,
        websocket_bridge: Any,
        user_context: UserExecutionContext | None,
        *,
        factory: Any = None,  # an ExecutionEngineFactory (above this module)
    ) -> UserExecutionEngine:
        """Deprecated: as ``create_from_legacy``. Use ``factory.create_for_user(ctx)``."""
        engine: UserExecutionEngine = _legacy_constructors().engine_classmethod(
            "from_registry", registry, websocket_bridge, user_context, factory
        )
        return engine

    async def __aenter__(self) -> UserExecutionEngine:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.cleanup()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._active)} active"
        return f"<UserExecutionEngine user={self.context.user_id!r} {state}>"


def _run_tracer(user_ids: bool) -> RunTracer:
    """The engine's ``RunTracer``; the tracing module (and OpenTelemetry) is imported only
    once an application installed an SDK."""
    from agentengine.runtime.tracing import run_tracer

    return run_tracer(user_ids)


def _legacy_constructors() -> Any:
    """``agentengine.legacy.constructors``, looked up by name when a deprecated classmethod is
    called: the legacy layer sits above the runtime (it builds on the engine and the factory),
    so the runtime never imports it; only these two deprecated entry points reach up to it."""
    return importlib.import_module("agentengine.legacy.constructors")


_STAT_INDEX = {
    RunStatus.SUCCEEDED: 1,
    RunStatus.FAILED: 2,
    RunStatus.TIMED_OUT: 3,
    RunStatus.CANCELLED: 4,
}


class _LayeredTools:
    """An engine's own tools over the factory's shared registry."""

    __slots__ = ("_local", "_shared")

    def __init__(self, local: dict[str, Tool], shared: ToolRegistry) -> None:
        self._local = local
        self._shared = shared

    def get(self, name: str) -> Tool | None:
        found = self._local.get(name)
        return found if found is not None else self._shared.get(name)

    def names(self) -> list[str]:
        return sorted({*self._local, *self._shared.names()})


async def wait_runs(handles: Iterable[RunHandle], timeout: float | None) -> bool:
    """Wait until these runs have emitted their terminal events; True if all did in time.
    Cancelling the wait spares the runs."""
    pending = [h._run for h in handles if not h._run._finished]
    if not pending:
        return True
    waiters = [asyncio.ensure_future(r._wait_finished()) for r in pending]
    try:
        _, still = await asyncio.wait(waiters, timeout=timeout)
    finally:
        for waiter in waiters:
            waiter.cancel()
    return not still


async def _call_agent(run: RunContext) -> Any:
    return await run.agent.func(run, **run.input)


async def _invoke_tool(run: RunContext, call: ToolCall) -> Any:
    return await call.tool.invoke(run, call.args)


def _as_step(raw: PipelineStep | str | tuple[str, Mapping[str, Any]]) -> PipelineStep:
    if isinstance(raw, PipelineStep):
        return raw
    if isinstance(raw, str):
        return PipelineStep(raw)
    if isinstance(raw, tuple) and len(raw) == 2:
        return PipelineStep(raw[0], raw[1])
    raise TypeError(
        f"a pipeline step must be a PipelineStep, an agent name or (agent, input); got {raw!r}"
    )
