"""From the event sink to one client connection, through a bounded buffer.

``EventPump`` reads one user's stream (``factory.events.subscribe(user_id, after=cursor)``) in
its own task and keeps at most ``capacity`` encoded frames for the connection to send. The
engine never waits for a client (the sink keeps the events), so a slow client never slows the
engine or anyone else. A full buffer that does not drain within ``stall_timeout`` seconds is an
overflow: the pump stops and reports ``overflowed``, and the connection is closed so that the
client resumes from the last cursor it received, losing nothing the sink still retains. (A
healthy client replaying a long backlog keeps draining the buffer, so it never overflows.)
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

import structlog
from agentengine import BaseEvent, EventGap, EventSink

__all__ = ["EventPump", "FrameEncoder", "Frame", "BufferOverflowError"]

_log = structlog.get_logger("agentengine_server.streaming")


class Frame:
    """One item of a user's stream, encoded once: its cursor, type and JSON text."""

    __slots__ = ("cursor", "gap", "text")

    def __init__(self, cursor: str | None, text: str, gap: bool) -> None:
        self.cursor = cursor
        self.text = text
        self.gap = gap


class BufferOverflowError(Exception):
    """The client fell more than the buffer's capacity behind."""


class FrameEncoder:
    """Encodes stream items to JSON text, caching recent ones.

    Every connection of a user receives the same event objects; the cache (keyed by user and
    cursor, bounded) makes each event cost one ``json.dumps`` however many connections the
    user has open.
    """

    def __init__(self, size: int = 8192) -> None:
        self._size = size
        self._cache: OrderedDict[tuple[str, str], Frame] = OrderedDict()

    def encode(self, item: BaseEvent | EventGap) -> Frame:
        """The frame of one event or gap."""
        if isinstance(item, EventGap):
            return Frame(item.cursor, _dumps(item.to_wire()), gap=True)
        cursor = item.cursor
        if cursor is None:  # a sink that sets no cursor: nothing to cache on
            return Frame(None, _dumps(item.to_wire()), gap=False)
        key = (item.user_id, cursor)
        frame = self._cache.get(key)
        if frame is None:
            frame = self._cache[key] = Frame(cursor, _dumps(item.to_wire()), gap=False)
            if len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return frame


def _dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


class EventPump:
    """A bounded buffer of one user's stream for one connection.

    ``await next()`` returns the next frame, None once the stream ended (the sink closed), or
    raises ``BufferOverflowError``. ``after`` is the cursor to resume after (None: everything
    retained).
    """

    def __init__(
        self,
        sink: EventSink,
        user_id: str,
        after: str | None,
        *,
        capacity: int,
        encoder: FrameEncoder,
        stall_timeout: float = 5.0,
        on_overflow: Callable[[], None] | None = None,
    ) -> None:
        self.user_id = user_id
        self.after = after
        self.capacity = capacity
        self.stall_timeout = stall_timeout
        self._on_overflow = on_overflow
        self._space = asyncio.Event()
        self._sink = sink
        self._encoder = encoder
        self._frames: deque[Frame] = deque()
        self._wakeup = asyncio.Event()
        self._ended = False
        self.overflowed = asyncio.Event()
        self.error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start reading the stream (the subscription is made now)."""
        self._task = asyncio.get_running_loop().create_task(
            self._read(), name=f"agentengine-server-pump-{self.user_id}"
        )

    async def _read(self) -> None:
        frames = self._frames
        try:
            async for item in self._sink.subscribe(self.user_id, after=self.after):
                while len(frames) >= self.capacity:
                    self._space.clear()
                    try:
                        async with asyncio.timeout(self.stall_timeout):
                            await self._space.wait()
                    except TimeoutError:
                        self.overflowed.set()
                        if self._on_overflow is not None:
                            self._on_overflow()
                        return
                frames.append(self._encoder.encode(item))
                self._wakeup.set()
        except Exception as exc:
            # A broken subscription (a sink losing its backend) ends this connection's stream;
            # the client reconnects and resumes by cursor.
            self.error = exc
            _log.error("event subscription failed", user_id=self.user_id, error=repr(exc))
        finally:
            self._ended = True
            self._wakeup.set()

    async def next(self) -> Frame | None:
        """The next frame (None at the end of the stream); raises ``BufferOverflowError``."""
        while True:
            if self.overflowed.is_set():
                raise BufferOverflowError
            if self._frames:
                self._space.set()
                return self._frames.popleft()
            if self._ended:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()

    def pending(self) -> int:
        """Frames read but not yet taken."""
        return len(self._frames)

    async def stop(self) -> None:
        """Stop reading (idempotent)."""
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
