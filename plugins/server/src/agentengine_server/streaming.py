"""From the event sink to client connections, through bounded per-connection buffers.

Each connection has an ``EventPump``: a buffer of at most ``capacity`` encoded frames that its
sender drains. The engine never waits for a client (the sink keeps the events), so a slow
client never slows the engine or anyone else.

Frames reach a pump in one of two ways:

* **fan-out** (the common case): all of a user's connections that are caught up share one
  subscription, a ``UserFanout``, which reads each event once and appends its frame to every
  member's buffer. A member whose buffer is full leaves the fan-out and catches up on its own;
* **catch-up**: a pump resuming from an older cursor (or one that fell behind) reads the sink
  itself from its own position, waiting for buffer space as needed; once it reaches the
  fan-out's position it joins the fan-out again.

A buffer that stays full for ``stall_timeout`` seconds is an overflow: the pump stops and
reports ``overflowed``, and the connection is closed so that the client resumes from the last
cursor it received, losing nothing the sink still retains. (A healthy client replaying a long
backlog keeps draining its buffer, so it never overflows.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections import OrderedDict, deque
from collections.abc import AsyncGenerator, Callable
from typing import Any

import structlog
from agentengine import LIVE, BaseEvent, EventGap, EventSink, StreamItem

from agentengine_server.errors import BufferOverflowError, InvalidCursorError, describe_error

__all__ = ["EventPump", "Frame", "FrameEncoder", "StreamHub", "UserFanout"]

_log = structlog.get_logger("agentengine_server.streaming")


#: What a cached frame costs besides its text: the frame, its cache key and entry.
FRAME_OVERHEAD = 256


class Frame:
    """One item of a user's stream, encoded once: its cursor, type and JSON text.

    ``failed`` marks the error item sent in place of an event that could not be encoded;
    ``size`` is the memory it holds (its text's, plus ``FRAME_OVERHEAD``), what the byte bounds
    of the frame cache and of the send buffers count.
    """

    __slots__ = ("cursor", "failed", "gap", "missed", "published", "size", "text")

    def __init__(self, cursor: str | None, text: str, gap: bool, failed: bool = False) -> None:
        self.cursor = cursor
        self.text = text
        self.gap = gap
        self.failed = failed
        self.size = sys.getsizeof(text) + FRAME_OVERHEAD
        #: The event's ``ts`` (epoch seconds), for the delivery lag; None for other items.
        self.published: float | None = None
        #: An ``events_lost`` frame's count of lost events (0: unknown, or not a gap).
        self.missed = 0


class FrameEncoder:
    """Encodes stream items to JSON text, caching recent ones.

    Every connection of a user receives the same event objects; the cache (keyed by user and
    cursor) makes each event cost one ``json.dumps`` however many connections the user has
    open. It keeps at most ``size`` frames and ``max_bytes`` bytes of them (``Frame.size``),
    the oldest going first; a frame larger than ``max_bytes`` is not kept at all.
    """

    def __init__(self, size: int = 8192, *, max_bytes: int = 32 * 1024 * 1024) -> None:
        self._size = size
        self.max_bytes = max_bytes
        #: Bytes held by the cached frames (``Frame.size`` summed).
        self.retained_bytes = 0
        self._cache: OrderedDict[tuple[str, str], Frame] = OrderedDict()

    def encode(self, item: BaseEvent | EventGap) -> Frame:
        """The frame of one event or gap. Never raises: an event whose wire form cannot be
        encoded as UTF-8 JSON becomes an error item naming it (see ``_unencodable``), so one
        event's content never ends a stream."""
        if isinstance(item, EventGap):
            return _encode(item, item.cursor, gap=True)
        cursor = item.cursor
        if cursor is None:  # a sink that sets no cursor: nothing to cache on
            return _encode(item, None, gap=False)
        key = (item.user_id, cursor)
        cache = self._cache
        frame = cache.get(key)
        if frame is None:
            frame = _encode(item, cursor, gap=False)
            if frame.size > self.max_bytes:
                return frame
            cache[key] = frame
            self.retained_bytes += frame.size
            while len(cache) > self._size or self.retained_bytes > self.max_bytes:
                self.retained_bytes -= cache.popitem(last=False)[1].size
        return frame


def _encode(item: BaseEvent | EventGap, cursor: str | None, *, gap: bool) -> Frame:
    try:
        text = _dumps(item.to_wire())
        # A lone surrogate survives json.dumps(ensure_ascii=False) but no transport can
        # write it as UTF-8: find out here, once per event, not in every connection's send.
        if not text.isascii():
            text.encode("utf-8")
    except Exception as exc:
        return _unencodable(item, cursor, exc)
    frame = Frame(cursor, text, gap=gap)
    if gap:
        frame.missed = getattr(item, "missed", None) or 0
    else:
        ts = getattr(item, "ts", None)
        if ts is not None:
            frame.published = ts.timestamp()
    return frame


def _unencodable(item: BaseEvent | EventGap, cursor: str | None, exc: Exception) -> Frame:
    """The error item sent in place of an event that could not be encoded: it names the event
    (run, seq, type, cursor) and carries its cursor, so clients resume after it."""
    fields: dict[str, Any] = {
        "type": "error",
        "error": "event_unencodable",
        "run_id": _plain(getattr(item, "run_id", None)),
        "seq": getattr(item, "seq", None),
        "event_type": _plain(getattr(item, "type", None)),
        "cursor": cursor,
    }
    status = getattr(item, "status", None)
    if status is not None:
        fields["status"] = _plain(status)
    reason = describe_error(exc)
    fields["message"] = (
        f"event seq {fields['seq']} ({fields['event_type']}) of run {fields['run_id']}, "
        f"cursor {cursor}, could not be encoded as JSON ({reason}); it is skipped and the "
        "stream goes on"
    )
    _log.warning(
        "event could not be encoded",
        user_id=_plain(getattr(item, "user_id", None)),
        run_id=fields["run_id"],
        seq=fields["seq"],
        cursor=cursor,
        error=reason,
    )
    return Frame(cursor, json.dumps(fields), gap=False, failed=True)


def _plain(value: Any) -> str | None:
    """``value`` as printable ASCII-safe text (None stays None)."""
    if value is None:
        return None
    try:
        text = str(value.value if hasattr(value, "value") else value)
    except Exception:
        return f"<{type(value).__name__}>"
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _dumps(data: dict[str, Any]) -> str:
    try:
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError:
        # NaN or an infinity somewhere (a tool result, an output): browsers' JSON.parse
        # refuses the bare tokens, so they travel as strings.
        safe = json.loads(json.dumps(data), parse_constant=str)
        return json.dumps(safe, separators=(",", ":"), ensure_ascii=False)


def _subscription(
    sink: EventSink, user_id: str, after: str | None
) -> AsyncGenerator[StreamItem, None]:
    """``sink.subscribe(user_id, after)``, called now: a live start (``LIVE``) counts from the
    moment a connection opens its stream, not from when a task first reads it. A refusal (an
    unusable cursor) is raised by the first read, where a sink may also raise it."""
    try:
        return sink.subscribe(user_id, after=after)
    except Exception as exc:
        return _raising(exc)


async def _raising(exc: Exception) -> AsyncGenerator[StreamItem, None]:
    raise exc
    yield  # pragma: no cover - makes this an async generator


class UserFanout:
    """One subscription of a user's stream shared by that user's caught-up pumps."""

    def __init__(self, hub: StreamHub, user_id: str, after: str | None) -> None:
        self.hub = hub
        self.user_id = user_id
        #: Cursor of the last item distributed (the members' common position); ``LIVE``
        #: until the first item of a stream that started live.
        self.position = after
        self.members: set[EventPump] = set()
        items = _subscription(hub.sink, user_id, after)
        self.task = asyncio.get_running_loop().create_task(
            self._read(items), name=f"agentengine-server-fanout-{user_id}"
        )

    async def _read(self, subscription: AsyncGenerator[StreamItem, None]) -> None:
        error: BaseException | None = None
        encode = self.hub.encoder.encode
        started = False
        try:
            # Closed as soon as the fan-out ends: the sink forgets the subscriber at once.
            async with contextlib.aclosing(subscription) as items:
                async for item in items:
                    started = True
                    frame = encode(item)
                    if frame.cursor is not None:
                        self.position = frame.cursor
                    for member in list(self.members):
                        try:
                            member._offer(frame)
                        except Exception as exc:  # one broken connection must not stop others
                            _log.error(
                                "dropping a connection", user_id=self.user_id, error=repr(exc)
                            )
                            member._end(exc)
                            self.leave(member)
        except Exception as exc:
            error = _stream_error(exc, started)
            _log_stream_end(self.user_id, error, exc)
        finally:
            self.hub._forget(self)
            for member in list(self.members):
                member._end(error)
            self.members.clear()

    def leave(self, pump: EventPump) -> None:
        """Remove a member; the last one to leave ends the subscription."""
        self.members.discard(pump)
        if not self.members:
            self.hub._forget(self)
            self.task.cancel()


def _stream_error(exc: Exception, started: bool) -> Exception:
    """What ended a subscription: the sink refuses a bad cursor with a ValueError before the
    first item; anything else (later, or of another type) is the stream failing."""
    if not started and isinstance(exc, ValueError):
        return InvalidCursorError(str(exc))
    return exc


def _log_stream_end(user_id: str, error: Exception, exc: Exception) -> None:
    """A client's unusable cursor is the client's mistake (it gets ``invalid_cursor``): info,
    not an error of the server's; anything else that ends a subscription is."""
    if isinstance(error, InvalidCursorError):
        _log.info("resume cursor refused", user_id=user_id, error=describe_error(exc))
    else:
        _log.error("event subscription failed", user_id=user_id, error=describe_error(exc))


class StreamHub:
    """Creates pumps and keeps one ``UserFanout`` per user with live connections."""

    def __init__(
        self,
        sink: EventSink,
        encoder: FrameEncoder,
        *,
        capacity: int,
        stall_timeout: float,
        capacity_bytes: int = 1024 * 1024,
    ) -> None:
        self.sink = sink
        self.encoder = encoder
        self.capacity = capacity
        self.capacity_bytes = capacity_bytes
        self.stall_timeout = stall_timeout
        self._fanouts: dict[str, UserFanout] = {}

    def open(
        self, user_id: str, after: str | None, on_overflow: Callable[[], None] | None = None
    ) -> EventPump:
        """A started pump of ``user_id``'s events after ``after`` (None: all retained)."""
        pump = EventPump(self, user_id, after, on_overflow)
        pump._start()
        return pump

    def fanout(self, user_id: str) -> UserFanout | None:
        """The user's shared subscription, if there is one."""
        return self._fanouts.get(user_id)

    def _attach(self, pump: EventPump, position: str | None) -> bool:
        """Join the user's fan-out if it is at ``position`` (creating one if there is none).
        A live start (``LIVE``) joins a fan-out that started live too or has delivered the
        user's newest event: either way only new events follow."""
        fan = self._fanouts.get(pump.user_id)
        if fan is None:
            fan = self._fanouts[pump.user_id] = UserFanout(self, pump.user_id, position)
        elif fan.position != position and not (
            position == LIVE and fan.position == self.sink.latest_cursor(pump.user_id)
        ):
            return False
        fan.members.add(pump)
        pump._fanout = fan
        return True

    def _forget(self, fan: UserFanout) -> None:
        if self._fanouts.get(fan.user_id) is fan:
            del self._fanouts[fan.user_id]


class EventPump:
    """A bounded buffer of one user's stream for one connection: at most ``capacity`` frames
    and, but for a single frame larger than that, ``capacity_bytes`` bytes (``Frame.size``).

    ``await next()`` returns the next frame, None once the stream ended (the sink closed), or
    raises ``BufferOverflowError``. Create pumps with ``StreamHub.open``.
    """

    def __init__(
        self,
        hub: StreamHub,
        user_id: str,
        after: str | None,
        on_overflow: Callable[[], None] | None,
    ) -> None:
        self.user_id = user_id
        self.after = after
        self.capacity = hub.capacity
        self.capacity_bytes = hub.capacity_bytes
        self.stall_timeout = hub.stall_timeout
        self._hub = hub
        self._on_overflow = on_overflow
        #: Cursor of the last frame put in the buffer: where a catch-up reader starts.
        self._last = after
        self._frames: deque[Frame] = deque()
        #: Bytes of the buffered frames (``Frame.size`` summed).
        self.buffered_bytes = 0
        self._wakeup = asyncio.Event()
        self._space = asyncio.Event()
        self._ended = False
        self._fanout: UserFanout | None = None
        self._task: asyncio.Task[None] | None = None
        #: Set by the connection: sends a frame at once when nothing is queued or in flight.
        self.direct: Callable[[Frame], None] | None = None
        #: True while a send of this connection is in flight (frames then queue up).
        self.busy = False
        self.overflowed = asyncio.Event()
        self.error: BaseException | None = None

    @property
    def shared(self) -> bool:
        """True while the pump is fed by its user's fan-out."""
        return self._fanout is not None

    def _start(self) -> None:
        if not self._hub._attach(self, self._last):
            self._catch_up()

    def _catch_up(self) -> None:
        items = _subscription(self._hub.sink, self.user_id, self._last)
        self._task = asyncio.get_running_loop().create_task(
            self._read(items), name=f"agentengine-server-pump-{self.user_id}"
        )

    # -- fed by the fan-out ---------------------------------------------------------------

    def _offer(self, frame: Frame) -> None:
        direct = self.direct
        if direct is not None and not self.busy and not self._frames:
            # The common case, a client keeping up: send now, no task switch per frame.
            self._last = frame.cursor if frame.cursor is not None else self._last
            direct(frame)
            return
        if len(self._frames) >= self.capacity or self.buffered_bytes >= self.capacity_bytes:
            # Full: leave the fan-out and catch up on our own from the last buffered frame.
            fan, self._fanout = self._fanout, None
            if fan is not None:
                fan.leave(self)
            self._catch_up()
            return
        self._put(frame)

    def _put(self, frame: Frame) -> None:
        self._frames.append(frame)
        self.buffered_bytes += frame.size
        if frame.cursor is not None:
            self._last = frame.cursor
        self._wakeup.set()

    def _end(self, error: BaseException | None) -> None:
        self._fanout = None
        self.error = error
        self._ended = True
        self._wakeup.set()

    # -- catching up on our own -----------------------------------------------------------

    async def _read(self, subscription: AsyncGenerator[StreamItem, None]) -> None:
        frames = self._frames
        encode = self._hub.encoder.encode
        started = False
        try:
            async with contextlib.aclosing(subscription) as items:
                async for item in items:
                    started = True
                    while (
                        len(frames) >= self.capacity or self.buffered_bytes >= self.capacity_bytes
                    ):
                        self._space.clear()
                        try:
                            async with asyncio.timeout(self.stall_timeout):
                                await self._space.wait()
                        except TimeoutError:
                            self.overflowed.set()
                            self._wakeup.set()
                            if self._on_overflow is not None:
                                self._on_overflow()
                            return
                    frame = encode(item)
                    self._put(frame)
                    # Caught up with the fan-out: join it (no await between the check and the
                    # join, so no event can slip in between).
                    if frame.cursor is not None and self._hub._attach(self, frame.cursor):
                        self._task = None
                        return
        except Exception as exc:
            # A broken subscription (a sink losing its backend) ends this connection's stream;
            # the client reconnects and resumes by cursor.
            self.error = _stream_error(exc, started)
            _log_stream_end(self.user_id, self.error, exc)
        self._ended = True
        self._wakeup.set()

    # -- the connection's side ------------------------------------------------------------

    def take(self) -> Frame | None:
        """The next buffered frame, or None when the buffer is empty or a send is in flight
        (see ``wait``); raises ``BufferOverflowError``."""
        if self.overflowed.is_set():
            raise BufferOverflowError
        if self._frames and not self.busy:
            if self._task is not None:  # a catch-up reader may be waiting for space
                self._space.set()
            frame = self._frames.popleft()
            self.buffered_bytes -= frame.size
            return frame
        return None

    @property
    def ended(self) -> bool:
        """True once the stream ended (check ``error``); buffered frames may remain."""
        return self._ended

    def idle(self) -> None:
        """The in-flight send finished: let the sender take buffered frames."""
        self.busy = False
        self._wakeup.set()

    @property
    def drained(self) -> bool:
        """True once the stream ended and every frame was taken and sent."""
        return self._ended and not self._frames and not self.busy

    async def wait(self) -> None:
        """Wait until a frame can be taken, the stream is drained or the pump overflowed."""
        if self.busy:
            pass
        elif self._frames or self._ended or self.overflowed.is_set():
            return
        self._wakeup.clear()
        await self._wakeup.wait()

    async def next(self) -> Frame | None:
        """The next frame (None at the end of the stream); raises ``BufferOverflowError``."""
        while True:
            frame = self.take()
            if frame is not None:
                return frame
            if self._ended and not self._frames:
                return None
            await self.wait()

    def pending(self) -> int:
        """Frames buffered but not yet taken."""
        return len(self._frames)

    async def stop(self) -> None:
        """Stop reading (idempotent)."""
        fan, self._fanout = self._fanout, None
        if fan is not None:
            fan.leave(self)
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
