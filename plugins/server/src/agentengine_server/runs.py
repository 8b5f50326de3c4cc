"""Runs started through the server: one engine per run, tracked per user.

Each run gets its own engine from the factory (``factory.create_for_user``), cleaned up as soon
as the run ends, so ``max_engines_per_user`` caps how many runs a user may have in flight and
idle users hold no engine at all. Runs are looked up by (user, run id): a run id of another
user is simply not found.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from agentengine import (
    EngineClosedError,
    ExecutionEngineFactory,
    RunHandle,
    RunResult,
    ToolArgumentError,
    UnknownAgentError,
    UserExecutionContext,
)

from agentengine_server.streaming import describe_error

__all__ = ["RUNNING", "RunManager", "RunRecord", "ServerClosingError"]

_log = structlog.get_logger("agentengine_server.runs")

#: ``status`` of a run that has not ended yet (the others are ``RunStatus`` values).
RUNNING = "running"


class ServerClosingError(EngineClosedError):
    """The server is shutting down and takes no new runs."""


@dataclass
class RunRecord:
    """What the server knows of one run (the body of ``GET /v1/runs/{run_id}``)."""

    run_id: str
    user_id: str
    agent: str
    thread_id: str
    status: str = RUNNING
    output: Any = None
    error: str | None = None
    error_type: str | None = None
    created_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    handle: RunHandle | None = field(default=None, repr=False)

    def to_wire(self) -> dict[str, Any]:
        """The JSON form (the user id is left out: the caller is that user)."""
        return {
            "run_id": self.run_id,
            "agent": self.agent,
            "thread_id": self.thread_id,
            "status": self.status,
            "output": self.output,
            "error": self.error,
            "error_type": self.error_type,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
        }


class RunManager:
    """Starts, finds and cancels runs for users; remembers finished ones per user (bounded)."""

    def __init__(self, factory: ExecutionEngineFactory, *, finished_runs_kept: int = 1000) -> None:
        self.factory = factory
        self._keep = finished_runs_kept
        self._runs: dict[str, OrderedDict[str, RunRecord]] = {}
        self._watchers: set[asyncio.Task[None]] = set()
        self.closing = False

    def validate(self, agent: str, run_input: Any) -> dict[str, Any]:
        """Check the agent exists and the input fits it, without starting anything.

        Raises ``UnknownAgentError`` or ``ToolArgumentError`` (a ValueError).
        """
        found = self.factory.agents.get(agent) if isinstance(agent, str) else None
        if found is None:
            raise UnknownAgentError(str(agent), self.factory.agents.names())
        if run_input is not None and not isinstance(run_input, Mapping):
            raise ToolArgumentError(
                f"input for agent {agent!r} must be an object (a dict), "
                f"got {type(run_input).__name__}"
            )
        return found.validate_input(run_input)

    async def start(
        self,
        user_id: str,
        agent: str,
        run_input: Mapping[str, Any] | None,
        *,
        thread_id: str | None = None,
    ) -> RunRecord:
        """Start ``agent`` for ``user_id`` and return its record.

        Raises ``UnknownAgentError``, ``ToolArgumentError``, ``InvalidContextError`` (a bad
        thread id), ``EngineLimitError`` (too many runs in flight for the user) and
        ``ServerClosingError``/``EngineClosedError`` while shutting down.
        """
        if self.closing:
            raise ServerClosingError("the server is shutting down; retry on another instance")
        self.validate(agent, run_input)
        run_id = f"run-{uuid.uuid4().hex}"
        ctx_args: dict[str, Any] = {"user_id": user_id, "run_id": run_id}
        if thread_id is not None:
            ctx_args["thread_id"] = thread_id
        ctx = UserExecutionContext(**ctx_args)
        engine = await self.factory.create_for_user(ctx)
        try:
            handle = await engine.start_run(agent, dict(run_input or {}), run_id=run_id)
        except BaseException:
            await engine.cleanup()
            raise
        record = RunRecord(
            run_id=run_id, user_id=user_id, agent=agent, thread_id=ctx.thread_id, handle=handle
        )
        self._runs.setdefault(user_id, OrderedDict())[run_id] = record
        watcher = asyncio.get_running_loop().create_task(
            self._watch(record, handle, engine), name=f"agentengine-server-watch-{run_id}"
        )
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        return record

    async def _watch(self, record: RunRecord, handle: RunHandle, engine: Any) -> None:
        # Nothing may escape this task: nobody awaits it, so an exception would only surface
        # as "Task exception was never retrieved" and leave the record half-written.
        try:
            _apply(record, await handle.result())
        except Exception as exc:
            _log.exception("recording the end of a run failed", run_id=record.run_id)
            record.error = record.error or describe_error(exc)
        finally:
            record.finished_at = time.time()
            record.handle = None
            try:
                await engine.cleanup()
            except Exception:
                _log.exception("cleaning up a run's engine failed", run_id=record.run_id)
            self._trim(record.user_id)

    def _trim(self, user_id: str) -> None:
        runs = self._runs.get(user_id)
        if runs is None:
            return
        finished = [r for r in runs.values() if r.finished_at is not None]
        for old in finished[: max(0, len(finished) - self._keep)]:
            del runs[old.run_id]

    def get(self, user_id: str, run_id: str) -> RunRecord | None:
        """The user's run ``run_id``, or None (also for another user's run)."""
        runs = self._runs.get(user_id)
        return runs.get(run_id) if runs is not None else None

    def list(self, user_id: str) -> list[RunRecord]:
        """The user's known runs, oldest first."""
        return list(self._runs.get(user_id, {}).values())

    async def cancel(self, user_id: str, run_id: str) -> RunRecord | None:
        """Cancel the user's run and wait until it ended; None when it is not theirs."""
        record = self.get(user_id, run_id)
        if record is None:
            return None
        handle = record.handle
        if handle is not None:
            await handle.cancel()
            # Record the end now, so the answer already shows the final status.
            _apply(record, await handle.result())
        return record

    @property
    def active(self) -> int:
        """Runs in flight."""
        return len(self._watchers)

    async def wait_finished(self) -> None:
        """Wait until every watcher recorded its run's end."""
        while self._watchers:
            await asyncio.wait(list(self._watchers))


def _apply(record: RunRecord, result: RunResult) -> None:
    record.status = result.status.value
    record.output = wire_output(result)
    record.error = result.error
    record.error_type = result.error_type


def wire_output(result: RunResult) -> Any:
    """The run's output as the record keeps it: the output of its terminal ``agent_completed``
    event in wire form (what every stream carried), as plain JSON data that encodes as UTF-8.

    NaN and infinities become the strings "NaN", "Infinity", "-Infinity"; a lone surrogate
    becomes U+FFFD; an output that has no JSON form at all becomes a string saying so. Never
    raises, so a run's record (and ``GET /v1/runs``) is always readable.
    """
    terminal = result.events[-1] if result.events and result.events[-1].terminal else None
    try:
        output = terminal.to_wire()["output"] if terminal is not None else result.output
        return jsonable(output)
    except Exception as exc:
        return f"<output not representable as JSON: {describe_error(exc)}>"


_SURROGATE = re.compile("[\ud800-\udfff]")


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data that encodes as UTF-8: what JSON cannot hold becomes its
    ``str``, NaN or infinities the strings "NaN", "Infinity", "-Infinity", a lone surrogate
    U+FFFD. Raises what ``json.dumps`` raises for values it cannot walk (cycles, tuple keys)."""
    text = json.dumps(value, default=str, ensure_ascii=False)
    if not text.isascii():
        # In a str every surrogate code point is a lone one (pairs are single characters).
        text = _SURROGATE.sub("\ufffd", text)
    return json.loads(text, parse_constant=str)
