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
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from agentengine import (
    ExecutionEngineFactory,
    RunHandle,
    RunResult,
    UnknownAgentError,
    UserExecutionContext,
)
from agentengine.ids import new_id

from agentengine_server.errors import ServerClosingError, describe_error

__all__ = ["RECORD_OVERHEAD_BYTES", "RUNNING", "RunManager", "RunRecord", "wire_output"]

_log = structlog.get_logger("agentengine_server.runs")

#: ``status`` of a run that has not ended yet (the others are ``RunStatus`` values).
RUNNING = "running"


@dataclass(slots=True)  # slots: half the memory per record (many are kept)
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
    #: Size of ``output`` as compact JSON, and what the record counts for in the bounds.
    output_bytes: int = field(default=0, repr=False)
    size: int = field(default=0, repr=False)

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


#: What a finished record is counted as besides its output and error (the record, its ids and
#: its table entries: about 0.5 KiB measured with tracemalloc, counted twice over).
RECORD_OVERHEAD_BYTES = 1024


class _UserRuns:
    """One user's entry of the run table."""

    __slots__ = ("finished", "last_active", "runs")

    def __init__(self, now: float) -> None:
        #: Every known run of the user, in start order (what ``GET /v1/runs`` lists).
        self.runs: dict[str, RunRecord] = {}
        #: The finished ones, in the order they ended (the oldest is dropped first).
        self.finished: OrderedDict[str, RunRecord] = OrderedDict()
        #: When a run of the user last started or ended (``time.monotonic``).
        self.last_active = now

    @property
    def running(self) -> bool:
        return len(self.runs) > len(self.finished)


class RunManager:
    """Starts, finds and cancels runs for users; remembers finished ones, bounded per user
    (``finished_runs_kept``) and over all users (``max_finished_runs`` records and
    ``finished_runs_max_bytes``, least recently active users' oldest records dropped first),
    and forgets a user ``finished_runs_ttl`` seconds after their last run started or ended."""

    def __init__(
        self,
        factory: ExecutionEngineFactory,
        *,
        finished_runs_kept: int = 1000,
        max_finished_runs: int = 50_000,
        finished_runs_max_bytes: int = 64 * 1024 * 1024,
        finished_runs_ttl: float | None = 3600.0,
    ) -> None:
        self.factory = factory
        self._keep = finished_runs_kept
        self._max_count = max_finished_runs
        self._max_bytes = finished_runs_max_bytes
        self.ttl = finished_runs_ttl
        #: The run table: users in order of last activity, least recent first.
        self._users: OrderedDict[str, _UserRuns] = OrderedDict()
        #: Finished records held, over all users, and their counted size.
        self.finished_count = 0
        self.finished_bytes = 0
        self._watchers: set[asyncio.Task[None]] = set()
        self.closing = False

    def validate(self, agent: str, run_input: Any) -> dict[str, Any]:
        """Check the agent exists and the input fits it, without starting anything.

        Raises ``UnknownAgentError`` or ``ToolArgumentError`` (a ValueError; also for an
        input that is not an object, ``Agent.validate_input``'s rule).
        """
        found = self.factory.agents.get(agent) if isinstance(agent, str) else None
        if found is None:
            raise UnknownAgentError(str(agent), self.factory.agents.names())
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
        run_id = new_id("run")
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
        self._touch(user_id).runs[run_id] = record
        self.sweep()
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
            if record.status == RUNNING:
                record.status = "failed"
                record.error_type = type(exc).__name__
            record.error = record.error or describe_error(exc)
        finally:
            record.finished_at = time.time()
            record.handle = None
            try:
                await engine.cleanup()
            except Exception:
                _log.exception("cleaning up a run's engine failed", run_id=record.run_id)
            try:
                self._finished(record)
            except Exception:
                _log.exception("recording a finished run failed", run_id=record.run_id)

    # -- the run table ------------------------------------------------------------------------

    def _touch(self, user_id: str) -> _UserRuns:
        """The user's entry, created if needed, marked as just active."""
        now = time.monotonic()
        entry = self._users.get(user_id)
        if entry is None:
            entry = self._users[user_id] = _UserRuns(now)
        else:
            entry.last_active = now
            self._users.move_to_end(user_id)
        return entry

    def _finished(self, record: RunRecord) -> None:
        """Count a run that ended, then enforce the bounds."""
        entry = self._touch(record.user_id)
        if record.run_id not in entry.runs or record.run_id in entry.finished:
            return
        record.size = RECORD_OVERHEAD_BYTES + record.output_bytes + len(record.error or "")
        entry.finished[record.run_id] = record
        self.finished_count += 1
        self.finished_bytes += record.size
        while len(entry.finished) > self._keep:
            self._drop(entry, next(iter(entry.finished.values())))
        self._evict()
        self.sweep()

    def _drop(self, entry: _UserRuns, record: RunRecord, *, forget: bool = True) -> None:
        """Drop one finished record; forget the user when nothing of theirs is left (or leave
        that to the caller, which may be iterating over the users)."""
        del entry.finished[record.run_id]
        del entry.runs[record.run_id]
        self.finished_count -= 1
        self.finished_bytes -= record.size
        if forget and not entry.runs:
            del self._users[record.user_id]

    def _over(self) -> bool:
        return self.finished_count > self._max_count or self.finished_bytes > self._max_bytes

    def _evict(self) -> None:
        """Over the limits for all users: drop the oldest records of the least recently active
        users first (users with only runs in flight hold nothing to drop)."""
        emptied: list[str] = []
        for user_id, entry in self._users.items():
            if not self._over():
                break
            while entry.finished and self._over():
                self._drop(entry, next(iter(entry.finished.values())), forget=False)
            if not entry.runs:
                emptied.append(user_id)
        for user_id in emptied:
            del self._users[user_id]

    def sweep(self) -> None:
        """Forget the users idle for longer than the TTL (records and table entry). A user with
        a run in flight is not idle."""
        if self.ttl is None:
            return
        now = time.monotonic()
        deadline = now - self.ttl
        users = self._users
        while users:
            user_id, entry = next(iter(users.items()))
            if entry.last_active > deadline:
                return
            if entry.running:
                entry.last_active = now
                users.move_to_end(user_id)
                continue
            del users[user_id]
            self.finished_count -= len(entry.finished)
            self.finished_bytes -= sum(r.size for r in entry.finished.values())

    @property
    def sweep_interval(self) -> float:
        """How often an idle server should ``sweep``: half the TTL, within 0.05 to 60 s."""
        return 60.0 if self.ttl is None else max(0.05, min(60.0, self.ttl / 2))

    def user_ids(self) -> list[str]:
        """The users the table holds, least recently active first."""
        return list(self._users)

    def get(self, user_id: str, run_id: str) -> RunRecord | None:
        """The user's run ``run_id``, or None (also for another user's run)."""
        entry = self._users.get(user_id)
        return entry.runs.get(run_id) if entry is not None else None

    def list(self, user_id: str) -> list[RunRecord]:
        """The user's known runs, oldest first."""
        entry = self._users.get(user_id)
        return list(entry.runs.values()) if entry is not None else []

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
    record.output, record.output_bytes = wire_output(result)
    record.error = result.error
    record.error_type = result.error_type


def wire_output(result: RunResult) -> tuple[Any, int]:
    """The run's output as the record keeps it: the output of its terminal ``agent_completed``
    event in wire form (what every stream carried), as plain JSON data that encodes as UTF-8.

    NaN and infinities become the strings "NaN", "Infinity", "-Infinity"; a lone surrogate
    becomes U+FFFD; an output that has no JSON form at all becomes a string saying so. Never
    raises, so a run's record (and ``GET /v1/runs``) is always readable. Returns the output and
    its size in bytes as compact JSON.
    """
    terminal = result.events[-1] if result.events and result.events[-1].terminal else None
    try:
        output = terminal.to_wire()["output"] if terminal is not None else result.output
        text = _json_text(output)
    except Exception as exc:
        text = json.dumps(f"<output not representable as JSON: {describe_error(exc)}>")
    return json.loads(text, parse_constant=str), len(text.encode("utf-8"))


_SURROGATE = re.compile("[\ud800-\udfff]")


def _json_text(value: Any) -> str:
    """Compact JSON text of ``value`` that encodes as UTF-8: what JSON cannot hold becomes its
    ``str``, NaN or infinities the strings "NaN", "Infinity", "-Infinity", a lone surrogate
    U+FFFD. Raises what ``json.dumps`` raises for values it cannot walk (cycles, tuple keys)."""
    text = json.dumps(value, default=str, ensure_ascii=False, separators=(",", ":"))
    if not text.isascii():
        # In a str every surrogate code point is a lone one (pairs are single characters).
        text = _SURROGATE.sub("\ufffd", text)
    return text
