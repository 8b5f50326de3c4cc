"""``RedisRunRegistry``: the records of submitted runs on Redis, read by every process.

With ``[redis] queue = true`` the plugin gives the factory this registry as ``factory.runs``.
A run still executes in the process that accepted it (the core's ``RunRegistry`` holds its
handle there); its record is written to Redis when it is submitted and when it ends, so that
``get`` and ``list`` answer for any run of the caller from any process, and ``cancel`` ends a
run of this process (a run of another process is answered with its record as it stands).

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
from agentengine import RunRecord, RunRegistry

from agentengine_redis.layout import run_key_prefix, runs_done_key, runs_key
from agentengine_redis.scripts import STORE_RUN

if TYPE_CHECKING:
    from agentengine import EngineSettings

    from agentengine_redis.sink import RedisEventSink

__all__ = ["RedisRunRegistry"]

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
    plugin's ``RedisEventSink`` (``sink``)."""

    def __init__(self, settings: EngineSettings, sink: RedisEventSink) -> None:
        super().__init__(settings)
        self.sink = sink
        self.prefix = sink.prefix
        # Background writes of started runs (held so they are not garbage collected).
        self._writes: set[asyncio.Task[None]] = set()

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
        user = record.user_id
        data = json.dumps(record.to_dict(), separators=(",", ":"), default=str)
        # The TTL as configured now (``configure`` may change it).
        ttl = self.ttl if self.ttl is not None else self.sink.settings.retention_seconds
        await self.sink._eval(
            STORE_RUN,
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
