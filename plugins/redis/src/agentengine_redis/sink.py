"""``RedisEventSink``: each user's event log on a Redis stream, shared by every process.

Publishing never waits for Redis: ``publish`` puts the event in this process's buffer and a
flusher task sends what accumulated, one pipelined script call per user per batch (the script
numbers the events and is idempotent, so a retried batch appends nothing twice). While Redis is
unreachable the buffer holds at most ``buffer_events`` events and ``buffer_bytes`` bytes; beyond
that new events are dropped, counted, logged, and recorded as a loss marker in the stream, so
subscribers get an ``events_lost`` item for them.

Reading: a subscriber first reads the stream itself from its cursor (``XRANGE``), then follows
it live through a ``_Tail``: the recent entries of that user, read by the one reader task of
this process, which multiplexes a blocking ``XREAD`` over the streams of every user with a live
subscriber here, on a connection of its own (always from the last id it read, never ``$``).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING, Any

import structlog
from agentengine import LIVE, AgentErrorEvent, BaseEvent, parse_event, wire_size

from agentengine_redis.config import RedisSettings, _safe_url
from agentengine_redis.health import config_async, config_sync, describe_server
from agentengine_redis.layout import (
    cursor_text,
    meta_key,
    parse_cursor,
    run_key_prefix,
    runs_done_key,
    runs_key,
    slots_key,
    stream_key,
)
from agentengine_redis.reading import Entry, Reading, Tail
from agentengine_redis.scripts import APPEND, OPEN, Script

if TYPE_CHECKING:
    from collections.abc import Callable

    from agentengine import StreamItem
    from redis.asyncio import Redis

__all__ = ["Fence", "RedisEventSink"]

_log = structlog.get_logger("agentengine_redis")

#: Entries one catch-up read (``XRANGE``) asks for.
_CHUNK = 512
#: Entries the reader asks for per stream and blocking read.
_READ_COUNT = 1024
#: Most entries a tail keeps in memory (fewer if the retention is smaller), and bytes over all
#: tails of the process (beyond it, a tail receiving entries keeps fewer; per tail:
#: ``reading.WINDOW_BYTES``). A tail is a cache: a subscriber behind it reads Redis.
_WINDOW = 1024
_TAILS_BYTES = 64 * 1024 * 1024
#: What an entry's decoded event costs besides its JSON text (as ``EVENT_OVERHEAD``).
_ENTRY_OVERHEAD = 768


class Fence:
    """A run executed here by a worker under ``attempt`` (see ``RedisEventSink.fence``).

    The append script refuses its events unless the run's hash in Redis names this attempt
    and the run has not ended, and its terminal event ends the run there (final record
    ``final(event, error_type)``) in the same atomic call. ``seq_base`` is added to its
    events' ``seq`` and, with ``drop_started``, its engine's ``agent_started`` is not written:
    a later attempt of a run continues its events (one ``agent_started``, seq without gaps).
    ``refused()`` is called once, when a write was refused (a newer attempt owns the run, or
    it ended elsewhere: the worker stops it).
    """

    __slots__ = (
        "attempt",
        "drop_started",
        "error_type",
        "final",
        "refused",
        "run_key",
        "seq_base",
        "told",
    )

    def __init__(
        self,
        run_key: str,
        attempt: int,
        final: Callable[[BaseEvent, str | None], bytes],
        refused: Callable[[], None],
        *,
        seq_base: int = 0,
        drop_started: bool = False,
    ) -> None:
        self.run_key = run_key
        self.attempt = str(attempt).encode()
        self.final = final
        self.refused = refused
        self.seq_base = seq_base
        self.drop_started = drop_started
        #: The ``error_type`` of the run's ``agent_error``, for its final record.
        self.error_type: str | None = None
        self.told = False


class _Lost:
    """Events of one user dropped before they reached Redis (a buffer overflow)."""

    __slots__ = ("count",)

    def __init__(self, count: int) -> None:
        self.count = count


class RedisEventSink:
    """The event sink on Redis Streams (see the module docstring); made by ``RedisPlugin``
    from ``[redis]``, or directly: ``RedisEventSink(RedisSettings(url=...))``.

    Guarantees as ``InMemoryEventSink``'s: per-user streams, cursors that resume losing and
    repeating nothing, an ``EventGap`` for anything no longer retained (or dropped before it
    was stored), a cursor ahead of the newest event refused with ``ValueError``. ``event.cursor``
    of a published event is set once Redis stored it (``await sink.flush()`` waits for that).
    """

    def __init__(self, settings: RedisSettings | None = None, **overrides: Any) -> None:
        base = settings or RedisSettings()
        self.settings = base.model_copy(update=overrides) if overrides else base
        if self.settings.url is None:
            raise ValueError("RedisEventSink needs [redis] url, e.g. redis://127.0.0.1:6379/0")
        s = self.settings
        self.url = s.url
        self.prefix = s.key_prefix
        self._ttl_ms = int(s.retention_seconds * 1000)
        self._window = min(_WINDOW, s.retention)
        #: This process's publisher id: names its batches for idempotent retries.
        self.publisher = secrets.token_hex(6)
        self._pending: dict[str, deque[BaseEvent | _Lost]] = {}
        self._buffered = 0
        self._buffered_bytes = 0
        self._batch_no = 0
        self._published = 0  # publish() calls (events accepted or dropped)
        self._processed = 0  # of those, stored (or given up on) by the flusher
        self._flush_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._tails: dict[str, Tail] = {}
        self._tail_bytes = 0  # estimated bytes held by all tails
        self._tails_changed: asyncio.Event | None = None
        self._wake_flusher: asyncio.Event | None = None
        self._wake_reader: asyncio.Event | None = None
        self._wake_key = f"{self.prefix}wake:{self.publisher}"
        self._wake_id = b"0-0"
        self._tasks: list[asyncio.Task[None]] = []
        #: Runs executed here by a worker, by run id (see ``Fence``).
        self._fences: dict[str, Fence] = {}
        #: Finished run records kept per user, and their expiry (ms): the bounds a fenced
        #: run's end applies (set by the run registry).
        self.run_bounds: tuple[int, int] = (1000, self._ttl_ms)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._redis: Redis | None = None
        self._reader_redis: Redis | None = None
        self._closing = False
        self._closed = False
        self._stopping = asyncio.Event()
        self._give_up_at = float("inf")
        self._dropping = False
        #: Live state for ``status()`` and ``/healthz``.
        self.reachable: bool | None = None
        self.last_error: str | None = None
        self.server_info: dict[str, str] = {}
        self.metrics: dict[str, int] = {
            "events_stored": 0,
            "events_dropped": 0,
            "batches": 0,
            "batch_retries": 0,
            "read_errors": 0,
            "events_refused": 0,
        }

    # -- connections and tasks ----------------------------------------------------------------

    def _client(self, *, blocking: bool) -> Redis:
        from redis.asyncio import BlockingConnectionPool, Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        s = self.settings
        assert s.url is not None
        # No retries inside redis-py: the flusher and the reader retry themselves (a retried
        # blocking read would wait again; a write's retry must go through the batch number).
        options: dict[str, Any] = {
            "socket_connect_timeout": s.connect_timeout,
            "retry": Retry(NoBackoff(), 0),
            "client_name": f"agentengine-{self.publisher}{'-reader' if blocking else ''}",
        }
        if blocking:
            # A connection of its own whose reply timeout outlasts BLOCK: the blocking read is
            # never cut short (and retried) by the socket timeout.
            options["socket_timeout"] = s.block_ms / 1000 + s.socket_timeout
            pool = BlockingConnectionPool.from_url(s.url, max_connections=1, **options)
        else:
            options["socket_timeout"] = s.socket_timeout
            # Callers wait for a free connection (200 subscribers catching up at once) rather
            # than fail with "too many connections".
            pool = BlockingConnectionPool.from_url(
                s.url, max_connections=s.max_connections, timeout=60, **options
            )
        return Redis(connection_pool=pool)

    def _start(self) -> None:
        if self._loop is not None:
            return
        self._loop = loop = asyncio.get_running_loop()
        self._redis = self._client(blocking=False)
        self._reader_redis = self._client(blocking=True)
        self._wake_flusher = asyncio.Event()
        self._wake_reader = asyncio.Event()
        self._tails_changed = asyncio.Event()
        self._stopping = asyncio.Event()
        for name, body in (
            ("flusher", self._flush_loop),
            ("reader", self._read_loop),
            ("waker", self._waker_loop),
            ("health", self._health_loop),
        ):
            self._tasks.append(loop.create_task(body(), name=f"agentengine-redis-{name}"))

    def _up(self) -> None:
        if self.reachable is not True:
            if self.reachable is False:
                _log.warning("redis reachable again", url=_safe_url(self.url or ""))
            self.reachable = True
            self.last_error = None

    def _down(self, exc: BaseException) -> None:
        text = f"{type(exc).__name__}: {exc}"
        if self.reachable is not False:
            _log.error("redis unreachable", url=_safe_url(self.url or ""), error=text)
        self.reachable = False
        self.last_error = text

    async def _eval(self, script: Script, keys: list[str], args: list[Any]) -> Any:
        from redis.exceptions import NoScriptError

        assert self._redis is not None
        try:
            return await self._redis.evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:
            await self._redis.script_load(script.source)
            return await self._redis.evalsha(script.sha, len(keys), *keys, *args)

    # -- fencing ------------------------------------------------------------------------------

    def fence(self, run_id: str, fence: Fence) -> None:
        """Write the events of run ``run_id`` (published from now on) under ``fence``."""
        self._fences[run_id] = fence

    def unfence(self, run_id: str) -> None:
        """Forget run ``run_id``'s fence (after its events were flushed)."""
        self._fences.pop(run_id, None)

    # -- publishing ---------------------------------------------------------------------------

    def publish(self, event: BaseEvent) -> None:
        """Buffer ``event`` for the flusher; never waits. Its ``cursor`` is set once stored."""
        if self._loop is None:
            self._start()
        data = event.__dict__
        if self._fences:
            fence = self._fences.get(data["run_id"])
            if fence is not None:
                if fence.drop_started and data["type"] == "agent_started":
                    return  # a later attempt: the run's agent_started was written already
                data["seq"] += fence.seq_base
        self._published += 1
        user_id = data["user_id"]
        size = wire_size(event)
        queue = self._pending.get(user_id)
        if queue is None:
            queue = self._pending[user_id] = deque()
        s = self.settings
        if (
            self._closed
            or self._buffered >= s.buffer_events
            or self._buffered_bytes + size > s.buffer_bytes
        ):
            self._drop(queue, user_id)
        else:
            queue.append(event)
            self._buffered += 1
            self._buffered_bytes += size
        wake = self._wake_flusher
        if wake is not None and not wake.is_set():
            wake.set()

    def _drop(self, queue: deque[BaseEvent | _Lost], user_id: str) -> None:
        self.metrics["events_dropped"] += 1
        if queue and isinstance(queue[-1], _Lost):
            queue[-1].count += 1
        else:
            queue.append(_Lost(1))
        if self._closed:
            _log.error("event published after the sink closed; dropped", user_id=user_id)
        elif not self._dropping:
            self._dropping = True
            _log.error(
                "redis event buffer full: dropping events (subscribers get events_lost)",
                user_id=user_id,
                buffered=self._buffered,
                buffered_bytes=self._buffered_bytes,
                reachable=self.reachable,
            )

    def _take_batch(self) -> dict[str, list[BaseEvent | _Lost]]:
        batch: dict[str, list[BaseEvent | _Lost]] = {}
        room = self.settings.batch_size
        pending = self._pending
        for user_id in list(pending):
            queue = pending[user_id]
            items = batch[user_id] = []
            while queue and room > 0:
                item = queue.popleft()
                items.append(item)
                if isinstance(item, BaseEvent):
                    room -= 1
                    self._buffered -= 1
                    self._buffered_bytes -= wire_size(item)
            if not queue:
                del pending[user_id]
            if room <= 0:
                break
        if self._dropping and self._buffered < self.settings.buffer_events // 2:
            self._dropping = False
            _log.warning(
                "redis event buffer has room again", dropped=self.metrics["events_dropped"]
            )
        return batch

    @staticmethod
    def _payload(event: BaseEvent) -> bytes:
        try:
            return event.__pydantic_serializer__.to_json(event)
        except Exception:  # an event made by hand with values that are not wire-safe
            import json

            return json.dumps(event.to_wire()).encode()

    def _calls(self, batch: dict[str, list[BaseEvent | _Lost]]) -> dict[str, list[Any]]:
        """Each user's script call (keys and arguments), made once per batch: a retry sends
        exactly the same call, batch number included."""
        calls: dict[str, list[Any]] = {}
        # One number per batch for all its users (a user's batches are applied in order, and
        # the script only compares a batch's number with the last one it applied).
        self._batch_no += 1
        number = self._batch_no
        prefix = self.prefix
        kept, record_ttl = self.run_bounds
        fences = self._fences
        for user_id, items in batch.items():
            keys = [stream_key(prefix, user_id), meta_key(prefix, user_id)]
            args: list[Any] = [
                self.publisher,
                number,
                secrets.token_hex(4),
                self.settings.retention,
                self._ttl_ms,
                kept,
                record_ttl,
                run_key_prefix(prefix, user_id),
            ]
            for item in items:
                if isinstance(item, _Lost):
                    args.append(-item.count)
                    continue
                fence = fences.get(item.__dict__["run_id"]) if fences else None
                if fence is None:
                    args += (0, self._payload(item))
                    continue
                if len(keys) == 2:
                    keys += (
                        runs_key(prefix, user_id),
                        runs_done_key(prefix, user_id),
                        slots_key(prefix, user_id),
                    )
                if fence.run_key in keys:
                    index = keys.index(fence.run_key) + 1
                else:
                    keys.append(fence.run_key)
                    index = len(keys)
                final = b""
                if isinstance(item, AgentErrorEvent):
                    fence.error_type = item.error_type
                elif item.terminal:
                    final = fence.final(item, fence.error_type)
                args += (index, self._payload(item), fence.attempt, item.seq, final)
            calls[user_id] = [keys, args]
        return calls

    async def _flush_loop(self) -> None:
        wake = self._wake_flusher
        assert wake is not None
        while True:
            if not self._pending:
                self._settle_flushes()
                if self._closing:
                    return
                wake.clear()
                await wake.wait()
                continue
            batch = self._take_batch()
            try:
                await self._send(batch)
            except Exception as exc:  # never let the flusher die: log, count, go on
                _log.error("redis flusher failed; batch dropped", error=repr(exc))
                self.metrics["events_dropped"] += sum(
                    1 for items in batch.values() for i in items if isinstance(i, BaseEvent)
                )
            self._processed += sum(
                1 if isinstance(i, BaseEvent) else i.count
                for items in batch.values()
                for i in items
            )
            self._settle_flushes()

    async def _send(self, batch: dict[str, list[BaseEvent | _Lost]]) -> None:
        from redis.exceptions import NoScriptError, ResponseError

        calls = self._calls(batch)
        delay = 0.02
        refusals: dict[str, int] = {}
        while calls:
            assert self._redis is not None
            try:
                pipe = self._redis.pipeline(transaction=False)
                for keys, args in calls.values():
                    pipe.evalsha(APPEND.sha, len(keys), *keys, *args)
                results = await pipe.execute(raise_on_error=False)
            except Exception as exc:
                self._down(exc)
                self.metrics["batch_retries"] += 1
                if self._closing and time.monotonic() > self._give_up_at:
                    self._give_up(calls, batch, exc)
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            self._up()
            self.metrics["batches"] += 1
            retry: dict[str, list[Any]] = {}
            for (user_id, call), result in zip(list(calls.items()), results, strict=True):
                if isinstance(result, NoScriptError):
                    retry[user_id] = call
                elif isinstance(result, Exception):
                    count = refusals[user_id] = refusals.get(user_id, 0) + 1
                    if count >= 5 or not isinstance(result, ResponseError):
                        self._give_up({user_id: call}, batch, result)
                    else:
                        retry[user_id] = call
                else:
                    self._stored(user_id, batch[user_id], result)
            if any(isinstance(r, NoScriptError) for r in results):
                await self._redis.script_load(APPEND.source)
            elif retry:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
            calls = retry

    def _stored(self, user_id: str, items: list[BaseEvent | _Lost], result: Any) -> None:
        epoch = result[0].decode() if isinstance(result[0], bytes) else str(result[0])
        n = int(result[1])
        refused = {int(i) for i in result[3:]}
        stored = 0
        for index, item in enumerate(items):
            if isinstance(item, _Lost):
                n += item.count
            elif index in refused:
                self._refused(item)
            else:
                item.__dict__["cursor"] = cursor_text(epoch, n)
                n += 1
                stored += 1
        self.metrics["events_stored"] += stored

    def _refused(self, event: BaseEvent) -> None:
        """A fenced run's event refused by Redis: its attempt is not the run's any more (the
        run was taken as lost, and ended or was given to another worker), or it ended."""
        self.metrics["events_refused"] += 1
        fence = self._fences.get(event.run_id)
        if fence is None or fence.told:
            return
        fence.told = True
        _log.warning(
            "a run's event was refused by redis: this attempt no longer owns the run (its "
            "worker was taken as lost, or the run ended elsewhere); stopping it here",
            run_id=event.run_id,
            user_id=event.user_id,
            attempt=fence.attempt.decode(),
            event_type=event.type,
        )
        try:
            fence.refused()
        except Exception:
            _log.exception("stopping a refused run failed", run_id=event.run_id)

    def _give_up(
        self,
        calls: dict[str, list[Any]],
        batch: dict[str, list[BaseEvent | _Lost]],
        exc: BaseException,
    ) -> None:
        lost = sum(1 for u in calls for i in batch[u] if isinstance(i, BaseEvent))
        self.metrics["events_dropped"] += lost
        _log.error(
            "redis refused or could not take events; dropped",
            users=sorted(calls)[:10],
            events=lost,
            error=f"{type(exc).__name__}: {exc}",
        )

    def _settle_flushes(self) -> None:
        done = self._processed
        keep = []
        for mark, fut in self._flush_waiters:
            if mark <= done or self._closed:
                if not fut.done():
                    fut.set_result(None)
            else:
                keep.append((mark, fut))
        self._flush_waiters = keep

    async def flush(self) -> None:
        """Wait until every event published so far was stored in Redis (or dropped)."""
        if self._loop is None:
            return
        if self._processed >= self._published:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._flush_waiters.append((self._published, fut))
        await fut

    # -- reading ------------------------------------------------------------------------------

    def _decode(self, epoch: str, rows: list[Any]) -> list[Entry]:
        out: list[Entry] = []
        for entry_id, fields in rows:
            raw = entry_id if isinstance(entry_id, bytes) else str(entry_id).encode()
            n = int(raw[: raw.index(b"-")])
            payload = fields.get(b"e")
            if payload is None:
                out.append((n, None))
                continue
            try:
                event = parse_event(payload)
            except Exception as exc:  # not ours, or corrupted: a loss, said so
                _log.error("unreadable event entry; delivered as events_lost", n=n, error=str(exc))
                out.append((n, None))
                continue
            event.__dict__["cursor"] = cursor_text(epoch, n)
            out.append((n, event))
        return out

    async def _open(self, user_id: str) -> tuple[str, int]:
        result = await self._eval(
            OPEN,
            [stream_key(self.prefix, user_id), meta_key(self.prefix, user_id)],
            [secrets.token_hex(4), self._ttl_ms],
        )
        self._up()
        epoch = result[0].decode() if isinstance(result[0], bytes) else str(result[0])
        return epoch, int(result[1])

    def latest_cursor(self, user_id: str) -> str | None:
        """The cursor of the user's newest event as far as this process knows without asking
        Redis: the newest its reader has seen for a user with live subscribers here, None
        otherwise. For a stream of only what comes next, subscribe with ``after=LIVE``."""
        tail = self._tails.get(user_id)
        return None if tail is None else cursor_text(tail.epoch, tail.last)

    async def subscribe(
        self, user_id: str, after: str | None = None
    ) -> AsyncGenerator[StreamItem, None]:
        """Yield the user's events after ``after`` (everything retained for None or "0"; only
        what is published from now on for ``LIVE``), then live ones, until the sink closes."""
        if self._loop is None:
            self._start()
        if after == LIVE:
            # The newest number, once this process's buffered events are stored.
            epoch, last = await self._live_start(user_id)
            wanted: str | None = epoch
            pos = last
        else:
            wanted, pos = parse_cursor(after, user_id)
            epoch, last = await self._open(user_id)
        foreign: str | None = None
        if wanted is not None and wanted != epoch:
            foreign, pos = after, 0
        elif pos > last:
            # Waiting here would silently skip every event until the log caught up with it.
            raise ValueError(
                f"cursor {after!r} is ahead of user {user_id!r}'s newest event (cursor "
                f"{cursor_text(epoch, last)}): it comes from another event stream (an earlier "
                "process, another sink); subscribe with after=None to read everything retained"
            )
        reading = Reading(user_id, epoch, pos, foreign)
        async for item in self._follow(reading):
            yield item

    async def _live_start(self, user_id: str) -> tuple[str, int]:
        await self.flush()
        return await self._open(user_id)

    async def _follow(self, reading: Reading) -> AsyncIterator[StreamItem]:
        user_id = reading.user_id
        skey = stream_key(self.prefix, user_id)
        while True:
            tail = self._tails.get(user_id)
            if tail is not None and tail.epoch == reading.epoch and tail.base <= reading.pos:
                tail.subscribers += 1
                try:
                    async for item in self._live_items(tail, reading):
                        yield item
                    if self._closed and reading.pos >= tail.last:
                        return
                finally:
                    tail.subscribers -= 1
                    if tail.subscribers == 0:
                        self._forget_tail(tail)
                continue  # fell behind the tail's window: catch up from Redis
            assert self._redis is not None
            rows: list[Any] = await self._redis.xrange(  # type: ignore[assignment]
                skey, min=f"{reading.pos + 1}-0", count=_CHUNK
            )
            for item in reading.items(self._decode(reading.epoch, rows)):
                yield item
            if len(rows) < _CHUNK:  # the end of the stream, as of now: follow it live
                if reading.foreign is not None:
                    yield reading.gap(reading.pos)
                if self._closed:
                    return
                if tail is not None and tail.epoch != reading.epoch:
                    # The log was created again (expired, or Redis lost it) while this stream
                    # started: end it; resuming with its last cursor tells what was lost.
                    raise ConnectionError(
                        f"the event log of user {user_id!r} was replaced in Redis; resume with "
                        "the last cursor received"
                    )
                if tail is None:
                    tail = Tail(user_id, reading.epoch, reading.pos)
                    self._tails[user_id] = tail
                    self._tails_changed_now()
                elif tail.base > reading.pos:
                    continue

    async def _live_items(self, tail: Tail, reading: Reading) -> AsyncIterator[StreamItem]:
        loop = asyncio.get_running_loop()
        while True:
            if tail.error is not None:
                raise tail.error
            if reading.pos < tail.base:
                return
            if reading.pos >= tail.last:
                if self._closed:
                    return
                fut: asyncio.Future[None] = loop.create_future()
                tail.waiters.append(fut)
                try:
                    await fut
                finally:
                    if not fut.done():
                        fut.cancel()
                        with contextlib.suppress(ValueError):
                            tail.waiters.remove(fut)
                continue
            for item in reading.items(tail.after(reading.pos)):
                yield item

    def _forget_tail(self, tail: Tail) -> None:
        """Stop reading ``tail``'s stream (its last subscriber left, or its log is gone)."""
        if self._tails.get(tail.user_id) is tail:
            del self._tails[tail.user_id]
            self._tail_bytes -= tail.bytes

    def _tails_changed_now(self) -> None:
        if self._tails_changed is not None:
            self._tails_changed.set()
        if self._wake_reader is not None:
            self._wake_reader.set()

    async def _waker_loop(self) -> None:
        """Interrupt the reader's blocking read when the set of streams to read changed: an
        entry in this process's wake stream, which the reader always reads too (race-free: an
        entry added before the read starts is returned at once)."""
        wake = self._wake_reader
        assert wake is not None
        while True:
            await wake.wait()
            wake.clear()
            assert self._redis is not None
            try:
                pipe = self._redis.pipeline(transaction=False)
                pipe.xadd(self._wake_key, {"w": 1}, maxlen=1, approximate=False)
                pipe.pexpire(self._wake_key, 3_600_000)
                await pipe.execute()
            except Exception as exc:
                self._down(exc)
                await asyncio.sleep(0.1)

    async def _read_loop(self) -> None:
        changed = self._tails_changed
        assert changed is not None
        assert self._reader_redis is not None
        redis = self._reader_redis
        failures = 0
        while not self._closed:
            tails = dict(self._tails)
            if not tails:
                changed.clear()
                await changed.wait()
                continue
            streams: dict[Any, Any] = {self._wake_key: self._wake_id}
            by_key: dict[bytes, Tail] = {}
            for user_id, tail in tails.items():
                key = stream_key(self.prefix, user_id)
                streams[key] = f"{tail.last}-0"
                by_key[key.encode()] = tail
            changed.clear()
            try:
                result: Any = await redis.xread(
                    streams, count=_READ_COUNT, block=self.settings.block_ms
                )
            except Exception as exc:
                self._down(exc)
                self.metrics["read_errors"] += 1
                failures += 1
                await asyncio.sleep(min(0.05 * 2**failures, 1.0))
                await self._verify_tails()
                continue
            if failures:
                failures = 0
                await self._verify_tails()
            self._up()
            for key, rows in result or ():
                if key == self._wake_key.encode():
                    self._wake_id = rows[-1][0]
                    continue
                target = by_key.get(key)
                if target is not None and self._tails.get(target.user_id) is target:
                    sizes = [len(fields.get(b"e", b"")) + _ENTRY_OVERHEAD for _, fields in rows]
                    before = target.bytes
                    target.add(self._decode(target.epoch, rows), sizes, self._window)
                    self._tail_bytes += target.bytes - before
                    over = self._tail_bytes - _TAILS_BYTES
                    if over > 0:
                        before = target.bytes
                        target.trim(self._window, target.bytes - over)
                        self._tail_bytes += target.bytes - before

    async def _tails_meta(self, tails: list[Tail], field: str) -> list[Any]:
        """``field`` of each tail's log metadata (``meta_key``), in one round trip."""
        assert self._redis is not None
        pipe = self._redis.pipeline(transaction=False)
        for tail in tails:
            pipe.hget(meta_key(self.prefix, tail.user_id), field)
        return list(await pipe.execute())

    async def _verify_tails(self) -> None:
        """End the tails whose log is not the one they follow any more (Redis lost its data,
        or the log expired and was created again): their subscribers' streams end with an
        error, and a client resuming with its cursor gets ``events_lost``."""
        tails = list(self._tails.values())
        if not tails or self._redis is None:
            return
        try:
            epochs = await self._tails_meta(tails, "epoch")
        except Exception as exc:
            self._down(exc)
            return
        for tail, epoch in zip(tails, epochs, strict=True):
            if epoch is None or epoch.decode() != tail.epoch:
                _log.error("event log of a user was lost in redis", user_id=tail.user_id)
                self._forget_tail(tail)
                tail.fail(
                    ConnectionError(
                        f"the event log of user {tail.user_id!r} is gone from Redis (restarted "
                        "without its data, or expired); resume with the last cursor received"
                    )
                )

    # -- health -------------------------------------------------------------------------------

    async def _health_loop(self) -> None:
        ticks = 0
        while not self._closed:
            assert self._redis is not None
            try:
                async with asyncio.timeout(self.settings.socket_timeout):
                    await self._redis.ping()
                    if not self.server_info or self.reachable is not True:
                        self.server_info = await self._server_info(self._redis)
                self._up()
            except Exception as exc:
                self._down(exc)
            ticks += 1
            if ticks % 10 == 0:
                await self._verify_tails()
            with contextlib.suppress(TimeoutError):
                # Closing sets the event: a command cancelled half-way costs redis-py a
                # reconnect, and sometimes a second.
                await asyncio.wait_for(self._stopping.wait(), self.settings.health_interval)

    @staticmethod
    async def _server_info(redis: Any) -> dict[str, str]:
        info = await redis.info("server")
        persistence = await redis.info("persistence")
        return describe_server(info, persistence, await config_async(redis))

    def status(self) -> dict[str, Any]:
        """The connection's state, for ``agentengine plugins`` and ``/healthz``."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # a command line: look now, synchronously
            return self._probe()
        if self._loop is None:
            self._start()
        state = {True: "reachable", False: "unreachable", None: "connecting"}[self.reachable]
        return self._report(state, self.server_info, self.last_error)

    def _probe(self) -> dict[str, Any]:
        import redis

        s = self.settings
        assert s.url is not None
        client = redis.Redis.from_url(
            s.url, socket_timeout=s.connect_timeout, socket_connect_timeout=s.connect_timeout
        )
        try:
            client.ping()
            info = describe_server(
                client.info("server"), client.info("persistence"), config_sync(client)
            )
        except Exception as exc:
            return self._report("unreachable", {}, f"{type(exc).__name__}: {exc}")
        finally:
            client.close()
        return self._report("reachable", info, None)

    def _report(self, state: str, info: dict[str, str], error: str | None) -> dict[str, Any]:
        where = _safe_url(self.url or "")
        if error:
            detail = f"{where}: {error}"
        else:
            version = info.get("version", "?")
            detail = f"{where}: redis {version}, persistence {info.get('persistence', '?')}"
        return {
            "name": "redis",
            "state": state,
            "detail": detail,
            # False while unreachable: /healthz answers 503 "degraded".
            "ready": state != "unreachable",
            "version": info.get("version"),
            "persistence": info.get("persistence"),
            "buffered": self._buffered,
            **self.metrics,
        }

    # -- closing ------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Store what is buffered (giving up after a few seconds if Redis is unreachable),
        let live subscribers here read what this process published, then end them."""
        if self._closing:
            return
        self._closing = True
        self._give_up_at = time.monotonic() + 3.0
        if self._loop is None:
            self._closed = True
            return
        assert self._wake_flusher is not None
        self._wake_flusher.set()
        flusher = self._tasks[0]
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(flusher), 4.0)
        await self._drain_tails(deadline=time.monotonic() + 2.0)
        self._closed = True
        self._stopping.set()
        for tail in list(self._tails.values()):
            tail.wake()
        self._settle_flushes()
        health = self._tasks[3]
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(health), self.settings.socket_timeout)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        for client in (self._redis, self._reader_redis):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.delete(self._wake_key) if client is self._redis else None
                with contextlib.suppress(Exception):
                    await client.aclose()

    async def _drain_tails(self, deadline: float) -> None:
        """Wait (bounded) until every tail read its stream up to its current end."""
        tails = list(self._tails.values())
        if not tails or self._redis is None:
            return
        try:
            lasts = await self._tails_meta(tails, "last")
        except Exception:
            return
        loop = asyncio.get_running_loop()
        for tail, last in zip(tails, lasts, strict=True):
            want = int(last or 0)
            while tail.last < want and tail.error is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                fut: asyncio.Future[None] = loop.create_future()
                tail.waiters.append(fut)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(fut, left)


def _consume(fut: asyncio.Future[Any]) -> None:
    """Retrieve a background future's exception so that asyncio does not log it."""
    if not fut.cancelled():
        fut.exception()
