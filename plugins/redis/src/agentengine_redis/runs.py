"""``RedisRunRegistry``: submitted runs queued on Redis for workers, their records read by
every process.

With ``[redis] queue = true`` the plugin gives the factory this registry as ``factory.runs``.
``submit_run`` then queues the run (``enqueue``: its record, ``queued``, and an entry on the
work stream, in one transaction) and returns a ``QueuedRun``; an ``agentengine worker``
executes it (see ``worker``), writing the record when the run starts and when it ends. ``get``
and ``list`` answer for any run of the caller from any process; ``cancel`` reaches a run
wherever it is (queued: ended at once; on a worker: flagged and announced to it).

Keys, all of one user in one hash slot (see ``layout``): a hash per run (the record as JSON),
a sorted set of the user's runs by creation time and one of their finished runs by end time.
Bounds: ``[engine] finished_runs_kept`` finished records per user (the oldest dropped first,
atomically with the write that goes beyond it), and every key expires ``finished_runs_ttl``
seconds (``[redis] retention_seconds`` when that is None) after the user's last write.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import secrets
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import structlog
from agentengine import (
    BackendUnavailableError,
    BaseEvent,
    EngineLimitError,
    RunHandle,
    RunRecord,
    RunRegistry,
    RunResult,
    RunStatus,
    ToolArgumentError,
)
from agentengine.telemetry import inject_trace_context

from agentengine_redis.config import _safe_url
from agentengine_redis.layout import (
    WORK_GROUP,
    cancel_channel,
    meta_key,
    queue_users_key,
    run_key_prefix,
    runs_done_key,
    runs_key,
    slots_key,
    stream_key,
    wait_key,
    work_key,
)
from agentengine_redis.scripts import (
    ACQUIRE,
    CANCEL,
    FINISH,
    REAP,
    RELEASE,
    RENEW,
    STORE_RUN,
    SUBMIT,
)
from agentengine_redis.sink import Fence

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine

    from agentengine import EngineSettings

    from agentengine_redis.sink import RedisEventSink

__all__ = ["QueuedRun", "RedisRunRegistry"]

#: Seconds between looks at a queued run's record while waiting for its end.
_POLL = 0.05

_log = structlog.get_logger("agentengine_redis")

#: The fields of a stored record (``RunRecord.to_dict``), all passed back to ``RunRecord``.
_FIELDS = (
    "run_id",
    "user_id",
    "agent",
    "thread_id",
    "status",
    "output",
    "error",
    "error_type",
    "created_at",
    "started_at",
    "finished_at",
    "event_count",
)


_P = ParamSpec("_P")
_T = TypeVar("_T")


def needs_redis(
    method: Callable[_P, Coroutine[Any, Any, _T]],
) -> Callable[_P, Coroutine[Any, Any, _T]]:
    """Turn Redis being unreachable (refused, timed out, loading its data, a read-only
    replica) during ``method`` into ``BackendUnavailableError``: a server answers it 503 with
    ``Retry-After``, not 500. The address and the cause are logged, not told to the client."""

    @functools.wraps(method)
    async def call(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        from redis import exceptions as rexc

        try:
            return await method(*args, **kwargs)
        except (rexc.ConnectionError, rexc.TimeoutError, rexc.ReadOnlyError, OSError) as exc:
            registry = args[0]
            assert isinstance(registry, RedisRunRegistry)
            settings = registry.sink.settings
            _log.warning(
                "redis unreachable: run queue call refused",
                call=method.__name__,
                url=_safe_url(settings.url or ""),
                error=f"{type(exc).__name__}: {exc}",
            )
            raise BackendUnavailableError(
                "Redis, where runs are queued and recorded, cannot be reached right now; "
                "nothing was done: retry in a few seconds. If this lasts, the operator should "
                "check that Redis is up and reachable (GET /healthz, agentengine plugins)",
                dependency="redis",
                retry_after=math.ceil(settings.health_interval),
            ) from None

    return call


class RedisRunRegistry(RunRegistry):
    """``factory.runs`` on Redis (see the module docstring). Uses the connections of the
    plugin's ``RedisEventSink`` (``sink``). ``submit_run`` queues runs for workers
    (``queues``); ``agentengine worker`` turns that off in its own process, which executes
    them."""

    queues = True

    def __init__(self, settings: EngineSettings, sink: RedisEventSink) -> None:
        super().__init__(settings)
        self.sink = sink
        self.prefix = sink.prefix
        #: The queue's figures as ``figures`` last read them (None before).
        self.last_figures: dict[str, float] | None = None
        # Background writes of started runs (held so they are not garbage collected).
        self._writes: set[asyncio.Task[Any]] = set()
        #: True in a worker: its runs end through the sink's append (their fence), never
        #: through ``store`` (see ``fence``).
        self.fencing = False
        self._bounds()

    def _bounds(self) -> None:
        ttl = self.ttl if self.ttl is not None else self.sink.settings.retention_seconds
        self.sink.run_bounds = (self.finished_runs_kept, int(ttl * 1000))

    def configure(self, **changes: Any) -> None:
        """As ``RunRegistry.configure``; the bounds apply to the ends written in Redis too."""
        super().configure(**changes)
        self._bounds()

    def started(self, record: RunRecord) -> None:
        """Write the record of a run that started executing, in the background (the script
        refuses it if the run's end was written first)."""
        task = asyncio.get_running_loop().create_task(
            self._store_in_flight(record), name=f"agentengine-redis-run-{record.run_id}"
        )
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _store_in_flight(self, record: RunRecord) -> None:
        try:
            await self._store(record)
        except Exception as exc:
            # The end is written again when the run ends; until then other processes see the
            # record as it was last stored.
            _log.warning(
                "storing a run's record in redis failed",
                run_id=record.run_id,
                error=f"{type(exc).__name__}: {exc}",
            )

    def _redis(self) -> Any:
        self.sink._start()  # idempotent: the sink's connections, made in the running loop
        assert self.sink._redis is not None
        return self.sink._redis

    async def wait_finished(self, timeout: float | None = None) -> bool:
        """As ``RunRegistry.wait_finished``, and wait for the background writes to Redis too
        (records of started runs, a worker's freeing of slots): the factory's shutdown calls
        this before it closes the sink whose connections they use."""
        finished = await super().wait_finished(timeout)
        if self._writes:
            await asyncio.wait(list(self._writes), timeout=timeout)
        return finished and not self._writes

    def track_write(self, task: asyncio.Task[Any]) -> None:
        """Hold a background write to Redis until it is done (see ``wait_finished``)."""
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def store(self, record: RunRecord) -> None:
        """Write the record (refused by Redis once the run's end was written). Failing to
        write a run in flight is logged, not raised: the run goes on here, and its end is
        written when it ends. An end that cannot be written because Redis is unreachable is
        written again in the background until Redis is back (``retrying``; ``wait_finished``
        waits for it), else the record would say the run is in flight for ever. Any other
        failure to write an end raises. In a worker the end is written with the run's terminal
        event (see ``fence``), not here."""
        if record.done and self.fencing:
            return
        if not record.done:
            await self._store_in_flight(record)
            return
        from redis import exceptions as rexc

        try:
            await self._store(record)
        except (rexc.ConnectionError, rexc.TimeoutError, rexc.ReadOnlyError, OSError):
            task = asyncio.get_running_loop().create_task(
                self._store_end_later(record), name=f"agentengine-redis-run-{record.run_id}"
            )
            self.track_write(task)

    async def _store_end_later(self, record: RunRecord) -> None:
        try:
            await self.retrying("storing a run's end", lambda: self._store(record))
        except Exception as exc:
            _log.error(
                "a run's end was not stored in redis: its record there stays in flight",
                run_id=record.run_id,
                status=record.status,
                error=f"{type(exc).__name__}: {exc}",
            )

    async def _store(self, record: RunRecord) -> None:
        self._redis()
        keys, args = self._store_call(record)
        await self.sink._eval(STORE_RUN, keys, args)

    async def retrying(
        self,
        what: str,
        call: Callable[[], Awaitable[_T]],
        stop: asyncio.Event | None = None,
    ) -> _T:
        """``await call()``, again (backing off up to 1 s) while Redis is unreachable, until
        it succeeds: a write that must not be lost when Redis restarts (a run's end, freeing
        its slot). Gives up, raising, once ``stop`` is set, or once the sink is closing and
        past its give-up time (3 s into shutdown), as the sink does with the events it
        buffers. The call must be safe to repeat: its first attempt may have been applied."""
        from redis import exceptions as rexc

        delay = 0.05
        while True:
            self._redis()
            try:
                return await call()
            except (rexc.ConnectionError, rexc.TimeoutError, rexc.ReadOnlyError, OSError) as exc:
                giving_up = self.sink._closing and time.monotonic() >= self.sink._give_up_at
                if giving_up or (stop is not None and stop.is_set()):
                    raise
                _log.warning(
                    f"{what} failed: Redis unreachable; retrying",
                    error=f"{type(exc).__name__}: {exc}",
                )
            await asyncio.sleep(delay)
            delay = min(1.0, delay * 2)

    def _store_call(self, record: RunRecord) -> tuple[list[str], list[Any]]:
        user = record.user_id
        data = json.dumps(record.to_dict(), separators=(",", ":"), default=str)
        # The TTL as configured now (``configure`` may change it).
        ttl = self.ttl if self.ttl is not None else self.sink.settings.retention_seconds
        return (
            [
                run_key_prefix(self.prefix, user) + record.run_id,
                runs_key(self.prefix, user),
                runs_done_key(self.prefix, user),
            ],
            [
                record.run_id,
                data,
                repr(record.created_at),
                "" if record.finished_at is None else repr(record.finished_at),
                self.finished_runs_kept,
                int(ttl * 1000),
                run_key_prefix(self.prefix, user),
                2 if record.done else 0 if record.status == "queued" else 1,
            ],
        )

    # -- the per-user limit across processes (used by the workers) --------------------------

    async def acquire(
        self, user_id: str, entry_id: str, default_timeout: float
    ) -> tuple[str, bytes, int, float, int] | None:
        """Take a slot and the user's oldest waiting run for the work-stream entry
        ``entry_id``: (run id, its work JSON, its attempt, seconds left before its deadline,
        its events so far), or None."""
        lease_ms = int(self.sink.settings.lease * 1000)
        self._redis()
        got = await self.sink._eval(
            ACQUIRE,
            [slots_key(self.prefix, user_id), wait_key(self.prefix, user_id)],
            [
                self.per_user_limit,
                lease_ms,
                run_key_prefix(self.prefix, user_id),
                entry_id,
                repr(float(default_timeout)),
            ],
        )
        if not got:
            return None
        run_id = got[0].decode() if isinstance(got[0], bytes) else str(got[0])
        return run_id, got[1], int(got[2]), int(got[3]) / 1000, int(got[4])

    async def renew(self, user_id: str, runs: list[tuple[str, int]]) -> list[int]:
        """Extend the leases of the user's runs executing here, (run id, attempt) each: per
        run 1 (held), 2 (held, and a cancel was asked) or 0 (lost to this attempt: stop it)."""
        self._redis()
        lease_ms = int(self.sink.settings.lease * 1000)
        args: list[Any] = [lease_ms, run_key_prefix(self.prefix, user_id)]
        for run_id, attempt in runs:
            args += (run_id, attempt)
        got = await self.sink._eval(RENEW, [slots_key(self.prefix, user_id)], args)
        return [int(state) for state in got]

    async def release(self, user_id: str, run_id: str, attempt: int) -> int:
        """After the run's attempt ended here: how many runs of the user wait for a slot, or
        -1 when its end never reached Redis (the reaper ends it)."""
        self._redis()
        keys = [slots_key(self.prefix, user_id), wait_key(self.prefix, user_id)]
        args = [run_id, run_key_prefix(self.prefix, user_id), attempt]
        return int(await self.sink._eval(RELEASE, keys, args))

    # -- ends written without an engine (cancel of a queued run, dead letter, reaper) ----------

    def _ending(self, user_id: str) -> tuple[list[str], list[Any]]:
        """The keys and first arguments of CANCEL, FINISH and REAP (see ``scripts``)."""
        s = self.sink.settings
        ttl = self.ttl if self.ttl is not None else s.retention_seconds
        p = self.prefix
        return (
            [
                stream_key(p, user_id),
                meta_key(p, user_id),
                runs_key(p, user_id),
                runs_done_key(p, user_id),
                slots_key(p, user_id),
                wait_key(p, user_id),
            ],
            [
                secrets.token_hex(4),
                s.retention,
                int(s.retention_seconds * 1000),
                self.finished_runs_kept,
                int(ttl * 1000),
                run_key_prefix(p, user_id),
                datetime.now(UTC).isoformat(),
            ],
        )

    async def finish_failed(
        self, user_id: str, run_id: str, attempt: int, error: str, error_type: str
    ) -> bool:
        """End a run this worker admitted (``attempt``) but cannot execute: its events
        (agent_started, agent_error, agent_completed failed) and record. False if it had
        ended or another attempt owns it."""
        self._redis()
        keys, args = self._ending(user_id)
        keys.append(run_key_prefix(self.prefix, user_id) + run_id)
        args += (run_id, attempt, error, error_type)
        return bool(await self.sink._eval(FINISH, keys, args))

    async def reap(self, user_id: str, entry_id: str) -> tuple[str, str, int]:
        """Look at a work-stream entry idle past the lease (see ``scripts.REAP``): (what was
        done, the run id or '', runs of the user waiting)."""
        self._redis()
        keys, args = self._ending(user_id)
        args += (entry_id, f"{self.sink.settings.lease:g}")
        what, run_id, waiting = await self.sink._eval(REAP, keys, args)
        return (
            what.decode() if isinstance(what, bytes) else str(what),
            run_id.decode() if isinstance(run_id, bytes) else str(run_id),
            int(waiting),
        )

    # -- fencing (in a worker) ------------------------------------------------------------------

    def fence(
        self,
        user_id: str,
        run_id: str,
        attempt: int,
        events_so_far: int,
        refused: Callable[[], None],
    ) -> None:
        """Write run ``run_id``'s events under ``attempt`` (see ``sink.Fence``): a later
        attempt continues the run's events after ``events_so_far``, without a second
        ``agent_started``. ``refused()`` is called when Redis refuses a write of it."""
        fence = Fence(
            run_key_prefix(self.prefix, user_id) + run_id,
            attempt,
            self._final,
            refused,
            seq_base=max(0, events_so_far - 1),
            drop_started=events_so_far > 0,
        )
        self.sink.fence(run_id, fence)

    def unfence(self, run_id: str) -> None:
        """Forget the fence of a run whose events were flushed."""
        self.sink.unfence(run_id)

    def _final(self, event: BaseEvent, error_type: str | None) -> bytes:
        """A fenced run's final record, from its terminal event (written with it)."""
        wire = event.to_wire()
        record = self.lookup(event.user_id, event.run_id)
        data = (
            record.to_dict()
            if record is not None
            else dict.fromkeys(_FIELDS)
            | {
                "run_id": event.run_id,
                "user_id": event.user_id,
                "agent": event.agent,
                "thread_id": event.thread_id,
                "created_at": time.time(),
            }
        )
        status = wire["status"]
        data.update(
            status=status,
            output=wire.get("output"),
            error=wire.get("error"),
            error_type="CancelledError" if status == "cancelled" else error_type,
            finished_at=time.time(),
            event_count=event.seq,
        )
        if status == "succeeded":
            data["error_type"] = None
        if data.get("started_at") is None:
            data["started_at"] = data["created_at"]
        return json.dumps(data, separators=(",", ":"), default=str).encode()

    async def wake(self, user_id: str) -> None:
        """Wake a worker for the user's waiting runs."""
        await self._redis().xadd(work_key(self.prefix), {"u": user_id})

    @needs_redis
    async def enqueue(
        self, record: RunRecord, run_input: dict[str, Any], timeout: float | None
    ) -> RunHandle:
        """Write the run's record (``queued``) and its entry on the work stream, in one
        transaction, and return a ``QueuedRun``: a worker executes it."""
        try:
            work = json.dumps(
                {
                    "user_id": record.user_id,
                    "run_id": record.run_id,
                    "thread_id": record.thread_id,
                    "agent": record.agent,
                    "input": run_input,
                    "timeout": timeout,
                    "attempts": self.sink.settings.retry_on_worker_loss.get(record.agent, 1),
                    # For the worker: the queue wait, and the trace the run's spans join.
                    "queued_at": record.created_at,
                    "trace": inject_trace_context(),
                },
                separators=(",", ":"),
                allow_nan=False,
            )
        except (TypeError, ValueError) as exc:
            raise ToolArgumentError(
                f"input for agent {record.agent!r} must be JSON data to be queued for a "
                f"worker ([redis] queue = true): {exc}"
            ) from None
        keys, args = self._store_call(record)
        user = record.user_id
        bound = self.sink.settings.max_queued_per_user
        pipe = self._redis().pipeline(transaction=True)
        # EVAL, not EVALSHA: a script missing from Redis's cache must not fail half of the
        # transaction (Redis does not roll the rest back). A refused run's wake-up is harmless.
        pipe.eval(
            SUBMIT.source,
            4,
            *keys,
            wait_key(self.prefix, user),
            *args[:7],
            0,
            work,
            bound,
            json.dumps(run_input, separators=(",", ":")),
        )
        pipe.xadd(work_key(self.prefix), {"u": user})
        # Whose keys the queue's figures count (``figures``).
        pipe.zadd(queue_users_key(self.prefix), {user: int(time.time() * 1000)})
        waiting, *_ = await pipe.execute()
        if int(waiting) < 0:
            raise EngineLimitError(
                f"user {user!r} already has {bound} runs waiting for a slot (the limit is "
                f"[redis] max_queued_per_user = {bound}, with max_concurrent_per_user = "
                f"{self.per_user_limit} executing); wait for one to end (or cancel one) and retry"
            )
        return QueuedRun(self, record)

    async def figures(self) -> dict[str, float]:
        """The queue's figures (``agentengine_redis.figures``): depth, runs queued and
        running, workers alive, runs lost; {} while Redis is unreachable. The last ones read
        are kept for ``agentengine plugins`` (``last_figures``)."""
        from agentengine_redis.figures import queue_figures

        try:
            figures = await queue_figures(self._redis(), self.prefix, WORK_GROUP)
        except Exception as exc:
            _log.warning("reading the queue's figures failed", error=f"{type(exc).__name__}: {exc}")
            return {}
        self.last_figures = figures
        return figures

    @staticmethod
    def _decode(raw: Any) -> RunRecord | None:
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            return RunRecord(**{name: data[name] for name in _FIELDS})
        except (ValueError, KeyError, TypeError):
            _log.error("unreadable run record in redis; ignored", record=repr(raw)[:200])
            return None

    @needs_redis
    async def get(self, user_id: str, run_id: str) -> RunRecord | None:
        """The user's run ``run_id`` from any process, or None (also for another user's run):
        this process's own record while the run is in flight here (the freshest), else the
        stored one."""
        local = self.lookup(user_id, run_id)
        if local is not None and not local.done:
            return local
        try:
            raw = await self._redis().hget(run_key_prefix(self.prefix, user_id) + run_id, "r")
        except Exception:
            if local is None:
                raise
            return local  # Redis unreachable: this process's own record is the answer
        return self._decode(raw) or local

    @needs_redis
    async def list(self, user_id: str) -> list[RunRecord]:
        """The user's runs known to any process (in flight and finished ones still kept),
        oldest first."""
        redis = self._redis()
        ids = [
            i.decode() if isinstance(i, bytes) else str(i)
            for i in await redis.zrange(runs_key(self.prefix, user_id), 0, -1)
        ]
        found: dict[str, RunRecord] = {}
        if ids:
            base = run_key_prefix(self.prefix, user_id)
            pipe = redis.pipeline(transaction=False)
            for run_id in ids:
                pipe.hget(base + run_id, "r")
            for run_id, raw in zip(ids, await pipe.execute(), strict=True):
                record = self._decode(raw)
                if record is not None:
                    found[run_id] = record
        for record in await super().list(user_id):
            if not record.done or record.run_id not in found:
                found[record.run_id] = record
        return sorted(found.values(), key=lambda r: r.created_at)

    @needs_redis
    async def cancel(self, user_id: str, run_id: str) -> RunRecord | None:
        """Cancel the user's run wherever it is and wait (bounded) until it ended; None when
        the user has no such run. Executing in this process: cancelled here. Queued: ended at
        once (``cancelled``; its agent never runs). Executing on a worker: flagged in its
        hash and announced on the cancel channel; its worker ends it (a worker that is gone:
        the reaper ends it ``cancelled``). Answers the record as it stands if the end takes
        longer than a few seconds."""
        if self.lookup(user_id, run_id) is not None:
            return await super().cancel(user_id, run_id)
        redis = self._redis()
        keys, args = self._ending(user_id)
        keys.append(run_key_prefix(self.prefix, user_id) + run_id)
        args.append(run_id)
        state = int(await self.sink._eval(CANCEL, keys, args))
        if state == 0:
            return await self.get(user_id, run_id)
        if state == 3:
            await redis.publish(
                cancel_channel(self.prefix), json.dumps([user_id, run_id], separators=(",", ":"))
            )
            # The worker ends it within a moment; a lost worker's run waits for the reaper.
            deadline = time.monotonic() + min(10.0, 2.0 + self.sink.settings.lease * 1.5)
            while time.monotonic() < deadline:
                record = await self.get(user_id, run_id)
                if record is None or record.done:
                    return record
                await asyncio.sleep(_POLL)
        return await self.get(user_id, run_id)


class QueuedRun(RunHandle):
    """The handle ``submit_run`` returns for a run it queued: the run executes on a worker.

    ``run_id``/``agent`` as for any handle; ``result()`` and ``wait()`` follow the run's record
    on Redis; iterating yields the run's events from the user's event log (from the oldest
    retained, so it may miss the first ones of a run older than the retention); ``done`` is
    the end as last seen by ``wait``/``result``.
    """

    __slots__ = ("_record", "_registry")

    def __init__(self, registry: RedisRunRegistry, record: RunRecord) -> None:
        super().__init__(None)  # type: ignore[arg-type]  # no run executes in this process
        self._registry = registry
        self._record = record

    @property
    def run_id(self) -> str:
        """The run's id."""
        return self._record.run_id

    @property
    def agent(self) -> str:
        """The agent's name."""
        return self._record.agent

    @property
    def done(self) -> bool:
        """True once ``wait`` or ``result`` saw the run's end."""
        return self._record.done

    async def __aiter__(self) -> AsyncIterator[BaseEvent]:
        """The run's events, live; ends after its ``agent_completed``."""
        record = self._record
        async for item in self._registry.sink.subscribe(record.user_id):
            if isinstance(item, BaseEvent) and item.run_id == record.run_id:
                yield item
                if item.terminal:
                    return

    async def cancel(self) -> None:
        """Cancel the run (see ``RedisRunRegistry.cancel``) and wait until it has ended."""
        await self._registry.cancel(self._record.user_id, self._record.run_id)
        await self.wait()

    def cancel_nowait(self) -> None:
        """Request cancellation without waiting."""
        task = asyncio.get_running_loop().create_task(
            self._registry.cancel(self._record.user_id, self._record.run_id)
        )
        self._registry._writes.add(task)
        task.add_done_callback(self._registry._writes.discard)

    async def wait(self) -> None:
        """Wait until the run's record says it ended (through a Redis outage: the run goes
        on on its worker meanwhile, and its end is written once Redis is back)."""
        record = self._record
        while not record.done:
            await asyncio.sleep(_POLL)
            try:
                found = await self._registry.get(record.user_id, record.run_id)
            except BackendUnavailableError:
                await asyncio.sleep(1.0)  # look again once a second until Redis is back
                continue
            if found is not None:
                record = self._record = found

    async def result(self) -> RunResult:
        """Wait for the run to end; its ``RunResult`` from its record (no events: read them
        from the event log)."""
        await self.wait()
        r = self._record
        duration = ((r.finished_at or 0.0) - (r.started_at or r.created_at)) * 1000
        return RunResult(
            run_id=r.run_id,
            agent=r.agent,
            user_id=r.user_id,
            status=RunStatus(r.status),
            output=r.output,
            error=r.error,
            error_type=r.error_type,
            duration_ms=max(0.0, duration),
        )
