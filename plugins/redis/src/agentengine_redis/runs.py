"""``RedisRunRegistry``: submitted runs queued on Redis for workers, their records read by
every process.

With ``[redis] queue = true`` the plugin gives the factory this registry as ``factory.runs``.
``submit_run`` then queues the run (``enqueue``: its record, ``queued``, and an entry on the
work stream, in one transaction) and returns a ``QueuedRun``; an ``agentengine worker``
executes it (see ``worker``), writing the record when the run starts and when it ends. ``get``
and ``list`` answer for any run of the caller from any process; ``cancel`` ends a run
executing in this process (a run elsewhere is answered with its record as it stands).

Keys, all of one user in one hash slot (see ``layout``): a hash per run (the record as JSON),
a sorted set of the user's runs by creation time and one of their finished runs by end time.
Bounds: ``[engine] finished_runs_kept`` finished records per user (the oldest dropped first,
atomically with the write that goes beyond it), and every key expires ``finished_runs_ttl``
seconds (``[redis] retention_seconds`` when that is None) after the user's last write.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import structlog
from agentengine import (
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

from agentengine_redis.layout import (
    run_key_prefix,
    runs_done_key,
    runs_key,
    slots_key,
    wait_key,
    work_key,
)
from agentengine_redis.scripts import ACQUIRE, RELEASE, RENEW, STORE_RUN, SUBMIT

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

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
        # Background writes of started runs (held so they are not garbage collected).
        self._writes: set[asyncio.Task[Any]] = set()

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
        written when it ends. Failing to write an end raises."""
        if record.done:
            await self._store(record)
        else:
            await self._store_in_flight(record)

    async def _store(self, record: RunRecord) -> None:
        self._redis()
        keys, args = self._store_call(record)
        await self.sink._eval(STORE_RUN, keys, args)

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

    async def acquire(self, user_id: str) -> tuple[str, bytes] | None:
        """Take a slot and the user's oldest waiting run: (run id, its work JSON), or None."""
        lease_ms = int(self.sink.settings.lease * 1000)
        self._redis()
        got = await self.sink._eval(
            ACQUIRE,
            [slots_key(self.prefix, user_id), wait_key(self.prefix, user_id)],
            [self.per_user_limit, lease_ms, run_key_prefix(self.prefix, user_id)],
        )
        if not got:
            return None
        run_id = got[0].decode() if isinstance(got[0], bytes) else str(got[0])
        return run_id, got[1]

    async def renew(self, user_id: str, run_ids: list[str]) -> int:
        """Extend the leases of the user's runs executing here; how many were still held."""
        self._redis()
        lease_ms = int(self.sink.settings.lease * 1000)
        return int(
            await self.sink._eval(RENEW, [slots_key(self.prefix, user_id)], [lease_ms, *run_ids])
        )

    async def release(self, user_id: str, run_id: str) -> int:
        """Free the run's slot; how many runs of the user wait for one."""
        self._redis()
        keys = [slots_key(self.prefix, user_id), wait_key(self.prefix, user_id)]
        return int(await self.sink._eval(RELEASE, keys, [run_id]))

    async def wake(self, user_id: str) -> None:
        """Wake a worker for the user's waiting runs."""
        await self._redis().xadd(work_key(self.prefix), {"u": user_id})

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
        )
        pipe.xadd(work_key(self.prefix), {"u": user})
        waiting, _ = await pipe.execute()
        if int(waiting) < 0:
            raise EngineLimitError(
                f"user {user!r} already has {bound} runs waiting for a slot (the limit is "
                f"[redis] max_queued_per_user = {bound}, with max_concurrent_per_user = "
                f"{self.per_user_limit} executing); wait for one to end (or cancel one) and retry"
            )
        return QueuedRun(self, record)

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

    async def cancel(self, user_id: str, run_id: str) -> RunRecord | None:
        """Cancel the user's run if it executes in this process and wait until it ended;
        a run of another process is answered with its record as it stands. None when the user
        has no such run."""
        if self.lookup(user_id, run_id) is not None:
            return await super().cancel(user_id, run_id)
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
        """Wait until the run's record says it ended."""
        record = self._record
        while not record.done:
            await asyncio.sleep(_POLL)
            found = await self._registry.get(record.user_id, record.run_id)
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
