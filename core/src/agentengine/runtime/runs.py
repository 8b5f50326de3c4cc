"""Runs owned by the factory: ``factory.submit_run`` and ``factory.runs``.

A submitted run gets an engine of its own, made for it and cleaned up (its extensions closed)
once the run has ended, so the run outlives whatever request submitted it. ``RunRegistry``
keeps a ``RunRecord`` per submitted run, looked up by (user id, run id): another user's run id
is simply not found. Finished records are bounded per user (``finished_runs_kept``), over all
users (``max_finished_runs`` records and ``finished_runs_max_bytes``, the least recently
active users' oldest records dropped first), and a user is forgotten ``finished_runs_ttl``
seconds after their last run started or ended (never while one of their runs is in flight).

``get``, ``list`` and ``cancel`` are coroutines: a registry shared by several processes
(Redis) implements the same interface with network round trips, and callers written against
this one then need no change.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from agentengine.errors import EngineLimitError, describe_error
from agentengine.events import RunStatus

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from agentengine.config import EngineSettings
    from agentengine.definitions.run import RunContext
    from agentengine.events import BaseEvent
    from agentengine.runtime.engine import RunHandle, RunResult, UserExecutionEngine

__all__ = [
    "QUEUED",
    "RECORD_OVERHEAD_BYTES",
    "RUNNING",
    "RunRecord",
    "RunRegistry",
    "wire_output",
]

_log = structlog.get_logger("agentengine.runtime.runs")

#: ``status`` of a submitted run waiting for its concurrency slot.
QUEUED = "queued"
#: ``status`` of a run executing (the terminal ones are ``RunStatus`` values).
RUNNING = "running"

#: What a finished record is counted as besides its output and error (the record, its ids and
#: its table entries: about 0.5 KiB measured with tracemalloc, counted twice over).
RECORD_OVERHEAD_BYTES = 1024


@dataclass(slots=True)  # slots: half the memory per record (many are kept)
class RunRecord:
    """What the factory knows of one submitted run.

    ``status`` is ``queued`` (waiting for a concurrency slot), ``running``, then one of the
    ``RunStatus`` values (``succeeded``, ``failed``, ``timed_out``, ``cancelled``). ``output``
    is the output of the run's terminal event as plain JSON data (see ``wire_output``).
    Times are ``time.time()`` seconds.
    """

    run_id: str
    user_id: str
    agent: str
    thread_id: str
    status: str = QUEUED
    output: Any = None
    error: str | None = None
    error_type: str | None = None
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    #: Events the run emitted so far (all of them once it ended).
    event_count: int = 0
    handle: RunHandle | None = field(default=None, repr=False)
    #: Size of ``output`` as compact JSON, and what the record counts for in the bounds.
    output_bytes: int = field(default=0, repr=False)
    size: int = field(default=0, repr=False)

    @property
    def done(self) -> bool:
        """True once the run ended (its terminal status and output are set)."""
        return self.finished_at is not None

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-safe data."""
        return {
            "run_id": self.run_id,
            "user_id": self.user_id,
            "agent": self.agent,
            "thread_id": self.thread_id,
            "status": self.status,
            "output": self.output,
            "error": self.error,
            "error_type": self.error_type,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "event_count": self.event_count,
        }


class RunTracker:
    """The extension a submitted run's engine gets: marks the record ``running`` when the run
    got its slot and counts its events (the engine holds this one run only)."""

    __slots__ = ("record", "registry")

    def __init__(self, record: RunRecord, registry: RunRegistry | None = None) -> None:
        self.record = record
        self.registry = registry

    async def around_run(self, run: RunContext, call_next: Callable[[], Awaitable[Any]]) -> Any:
        """Called once the run holds its concurrency slot and its input is valid."""
        record = self.record
        if record.finished_at is None:
            record.status = RUNNING
            record.started_at = time.time()
            if self.registry is not None:
                self.registry.started(record)
        return await call_next()

    def on_event(self, event: BaseEvent) -> None:
        """Count the run's events."""
        self.record.event_count += 1


class _UserRuns:
    """One user's entry of the run table."""

    __slots__ = ("finished", "in_flight", "last_active", "runs")

    def __init__(self, now: float) -> None:
        #: Every known run of the user, in start order (what ``list`` answers).
        self.runs: dict[str, RunRecord] = {}
        #: The finished ones, in the order they ended (the oldest is dropped first).
        self.finished: OrderedDict[str, RunRecord] = OrderedDict()
        #: Submitted runs not finished yet, counting those still being started.
        self.in_flight = 0
        #: When a run of the user last started or ended (``time.monotonic``).
        self.last_active = now


class RunRegistry:
    """The factory's submitted runs, by user: ``factory.runs``.

    ``get``, ``list`` and ``cancel`` answer only for the given user's runs. Bounds come from
    the ``[engine]`` settings (``finished_runs_kept``, ``max_finished_runs``,
    ``finished_runs_max_bytes``, ``finished_runs_ttl``); ``configure`` changes them. The TTL is
    enforced whenever the registry is used (and by ``sweep``, which an idle application may
    call now and then).
    """

    def __init__(self, settings: EngineSettings) -> None:
        self.per_user_limit = settings.max_concurrent_per_user
        self.finished_runs_kept = settings.finished_runs_kept
        self.max_finished_runs = settings.max_finished_runs
        self.finished_runs_max_bytes = settings.finished_runs_max_bytes
        self.ttl = settings.finished_runs_ttl
        #: The run table: users in order of last activity, least recent first.
        self._users: OrderedDict[str, _UserRuns] = OrderedDict()
        #: Finished records held, over all users, and their counted size.
        self.finished_count = 0
        self.finished_bytes = 0
        self._watchers: set[asyncio.Task[None]] = set()
        # One timer for the TTL: armed for the least recently active user's expiry.
        self._timer: asyncio.TimerHandle | None = None

    def configure(
        self,
        *,
        finished_runs_kept: int | None = None,
        max_finished_runs: int | None = None,
        finished_runs_max_bytes: int | None = None,
        finished_runs_ttl: float | object | None = ...,
    ) -> None:
        """Change the bounds (None, or ``...`` for the TTL, keeps one); enforced at once."""
        if finished_runs_kept is not None:
            self.finished_runs_kept = finished_runs_kept
        if max_finished_runs is not None:
            self.max_finished_runs = max_finished_runs
        if finished_runs_max_bytes is not None:
            self.finished_runs_max_bytes = finished_runs_max_bytes
        if finished_runs_ttl is not ...:
            self.ttl = finished_runs_ttl if isinstance(finished_runs_ttl, int | float) else None
        for entry in list(self._users.values()):
            while len(entry.finished) > self.finished_runs_kept:
                self._drop(entry, next(iter(entry.finished.values())))
        self._evict()
        self.sweep()

    # -- submitting (used by ExecutionEngineFactory.submit_run) ----------------------------------

    def reserve(self, user_id: str) -> None:
        """Count a submitted run of ``user_id`` as in flight before it is started;
        ``EngineLimitError`` when the user already has ``max_concurrent_per_user`` in flight.
        Pair with ``track`` or, when starting fails, ``unreserve``."""
        entry = self._touch(user_id)
        if entry.in_flight >= self.per_user_limit:
            raise EngineLimitError(
                f"user {user_id!r} already has {entry.in_flight} submitted runs in flight (the "
                f"limit is max_concurrent_per_user = {self.per_user_limit}); wait for one to "
                "end (or cancel one) and retry"
            )
        entry.in_flight += 1

    def unreserve(self, user_id: str) -> None:
        """Give back a ``reserve`` whose run never started."""
        entry = self._users.get(user_id)
        if entry is not None:
            entry.in_flight -= 1
            if not entry.runs and not entry.in_flight:
                del self._users[user_id]

    def track(self, record: RunRecord, handle: RunHandle, engine: UserExecutionEngine) -> None:
        """Hold a started run's record and clean its engine up once the run has ended."""
        record.handle = handle
        self._touch(record.user_id).runs[record.run_id] = record
        watcher = asyncio.get_running_loop().create_task(
            self._watch(record, handle, engine), name=f"agentengine-run-watch-{record.run_id}"
        )
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        self.sweep()

    async def _watch(self, record: RunRecord, handle: RunHandle, engine: Any) -> None:
        # Nothing may escape this task: nobody awaits it, so an exception would only surface
        # as "Task exception was never retrieved" and leave the record half-written.
        try:
            _apply(record, await handle.result())
        except Exception as exc:
            _log.exception("recording the end of a run failed", run_id=record.run_id)
            if record.status in (QUEUED, RUNNING):
                record.status = RunStatus.FAILED.value
                record.error_type = type(exc).__name__
            record.error = record.error or describe_error(exc)
        finally:
            self._ended(record)
            record.handle = None
            try:
                await self.store(record)
            except Exception:
                _log.exception("storing a finished run's record failed", run_id=record.run_id)
            try:
                await engine.cleanup()
            except Exception:
                _log.exception("cleaning up a run's engine failed", run_id=record.run_id)
            try:
                self._finished(record)
            except Exception:
                _log.exception("recording a finished run failed", run_id=record.run_id)

    #: True when ``submit_run`` queues runs for other processes (``enqueue``) instead of
    #: executing them in this one.
    queues = False

    async def enqueue(
        self, record: RunRecord, run_input: dict[str, Any], timeout: float | None
    ) -> RunHandle:
        """Queue a validated run for another process to execute (when ``queues``) and return
        its handle. This registry executes runs in this process."""
        raise NotImplementedError("this RunRegistry executes runs in this process")

    def started(self, record: RunRecord) -> None:
        """Called when a submitted run starts executing (its record says ``running``): a
        shared registry writes it in the background (``store`` of the end may overtake it, and
        must win). Must not raise or block; nothing to do in memory."""

    async def store(self, record: RunRecord) -> None:
        """Called with a run's record once it was submitted and once it ended: a registry
        shared by several processes writes it where they all read it. This one keeps records
        in memory, where they already are."""

    async def figures(self) -> dict[str, float]:
        """Figures of a shared run queue for operators (``GET /metrics``), by name: e.g.
        ``queue_depth``, ``runs_queued``, ``runs_running``, ``workers_alive``,
        ``runs_lost_total``. Never raises (an unreachable backend gives fewer figures, or
        none); never keyed by user. Runs executing in this process are counted elsewhere
        (``get_factory_metrics``), so this registry has none."""
        return {}

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

    def _ended(self, record: RunRecord) -> None:
        """The run has ended (once per run): its slot in the user's limit is free at once,
        before its engine is cleaned up, so a user may submit again right after a cancel."""
        if record.finished_at is None:
            record.finished_at = time.time()
            self._touch(record.user_id).in_flight -= 1

    def _finished(self, record: RunRecord) -> None:
        """Count a run whose engine was cleaned up, then enforce the bounds."""
        entry = self._touch(record.user_id)
        if record.run_id not in entry.runs or record.run_id in entry.finished:
            return
        record.size = RECORD_OVERHEAD_BYTES + record.output_bytes + len(record.error or "")
        entry.finished[record.run_id] = record
        self.finished_count += 1
        self.finished_bytes += record.size
        while len(entry.finished) > self.finished_runs_kept:
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
        if forget and not entry.runs and not entry.in_flight:
            del self._users[record.user_id]

    def _over(self) -> bool:
        return (
            self.finished_count > self.max_finished_runs
            or self.finished_bytes > self.finished_runs_max_bytes
        )

    def _evict(self) -> None:
        """Over the limits for all users: drop the oldest records of the least recently active
        users first (users with only runs in flight hold nothing to drop)."""
        emptied: list[str] = []
        for user_id, entry in self._users.items():
            if not self._over():
                break
            while entry.finished and self._over():
                self._drop(entry, next(iter(entry.finished.values())), forget=False)
            if not entry.runs and not entry.in_flight:
                emptied.append(user_id)
        for user_id in emptied:
            del self._users[user_id]

    def _arm(self) -> None:
        """Make sure a sweep is due when the least recently active user expires, so that the
        TTL holds with nobody using the registry (one timer, re-armed by the sweep)."""
        if self.ttl is None or self._timer is not None or not self._users:
            return
        first = next(iter(self._users.values()))
        delay = max(0.0, first.last_active + self.ttl - time.monotonic()) + 0.01
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a synchronous caller): the next use sweeps
            return
        self._timer = loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        try:
            self.sweep()
        except Exception:
            _log.exception("sweeping run records failed")

    def sweep(self) -> None:
        """Forget the users idle for longer than the TTL (records and table entry). A user with
        a run in flight is not idle."""
        if self.ttl is None:
            return
        try:
            self._sweep(self.ttl)
        finally:
            self._arm()

    def _sweep(self, ttl: float) -> None:
        now = time.monotonic()
        deadline = now - ttl
        users = self._users
        while users:
            user_id, entry = next(iter(users.items()))
            if entry.last_active > deadline:
                return
            if entry.in_flight:
                entry.last_active = now
                users.move_to_end(user_id)
                continue
            del users[user_id]
            self.finished_count -= len(entry.finished)
            self.finished_bytes -= sum(r.size for r in entry.finished.values())

    @property
    def sweep_interval(self) -> float:
        """How often an idle application should ``sweep``: half the TTL, within 0.05 to 60 s."""
        return 60.0 if self.ttl is None else max(0.05, min(60.0, self.ttl / 2))

    def user_ids(self) -> list[str]:
        """The users the table holds, least recently active first."""
        return list(self._users)

    def in_flight(self, user_id: str | None = None) -> int:
        """Submitted runs not ended yet: of ``user_id``, or in all."""
        if user_id is None:
            return len(self._watchers)
        entry = self._users.get(user_id)
        return entry.in_flight if entry is not None else 0

    # -- lookups ------------------------------------------------------------------------------

    def lookup(self, user_id: str, run_id: str) -> RunRecord | None:
        """``get`` without awaiting (this registry is in memory)."""
        self.sweep()
        entry = self._users.get(user_id)
        return entry.runs.get(run_id) if entry is not None else None

    async def get(self, user_id: str, run_id: str) -> RunRecord | None:
        """The user's run ``run_id``, or None (also for another user's run)."""
        return self.lookup(user_id, run_id)

    async def list(self, user_id: str) -> list[RunRecord]:
        """The user's known runs (in flight and finished ones still held), oldest first."""
        self.sweep()
        entry = self._users.get(user_id)
        return list(entry.runs.values()) if entry is not None else []

    async def cancel(self, user_id: str, run_id: str) -> RunRecord | None:
        """Cancel the user's run (queued or running) and wait until it ended; returns its
        record, already showing the final status (a run that had ended is left as it was).
        None when the user has no such run."""
        record = self.lookup(user_id, run_id)
        if record is None:
            return None
        handle = record.handle
        if handle is not None:
            await handle.cancel()
            # Record the end now, so the answer already shows the final status.
            _apply(record, await handle.result())
            self._ended(record)
            await self.store(record)
        return record

    async def wait_finished(self, timeout: float | None = None) -> bool:
        """Wait until every submitted run ended and its engine was cleaned up (at most
        ``timeout`` seconds); True if none is left."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while self._watchers:
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                return False
            await asyncio.wait(list(self._watchers), timeout=left)
        return True


def _apply(record: RunRecord, result: RunResult) -> None:
    record.status = result.status.value
    record.output, record.output_bytes = wire_output(result)
    record.error = result.error
    record.error_type = result.error_type
    # The newest event's seq: the run may hold fewer (run_event_retention_bytes).
    record.event_count = result.events[-1].seq if result.events else 0


def wire_output(result: RunResult) -> tuple[Any, int]:
    """The run's output as a record keeps it: the output of its terminal ``agent_completed``
    event in wire form (what every stream carried), as plain JSON data that encodes as UTF-8.

    NaN and infinities become the strings "NaN", "Infinity", "-Infinity"; a lone surrogate
    becomes U+FFFD; an output that has no JSON form at all becomes a string saying so. Never
    raises, so a run's record is always readable. Returns the output and its size in bytes as
    compact JSON.
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
