"""What one process reads of the users' streams: ``Tail``, the recent entries of one user's
stream shared by that user's live subscribers here, and ``Reading``, one subscriber's position,
which turns entries into stream items (an ``EventGap`` for every run of missing numbers)."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING

from agentengine import BaseEvent, EventGap

from agentengine_redis.layout import cursor_text

if TYPE_CHECKING:
    from agentengine import StreamItem

__all__ = ["WINDOW_BYTES", "Entry", "Reading", "Tail"]

#: Bytes a tail keeps at most (besides its newest entry). A tail is a cache: a subscriber
#: behind it reads Redis. The entries it keeps are bounded in number by the sink too.
WINDOW_BYTES = 1024 * 1024

#: One entry of a stream: its number and the event (None for a loss marker).
Entry = tuple[int, BaseEvent | None]


class Tail:
    """The recent entries of one user's stream, as this process's reader reads them, shared
    by that user's live subscribers here. ``entries`` holds every entry numbered above
    ``base`` up to ``last`` (numbers missing in between were trimmed or lost)."""

    __slots__ = (
        "base",
        "bytes",
        "entries",
        "epoch",
        "error",
        "last",
        "sizes",
        "subscribers",
        "user_id",
        "waiters",
    )

    def __init__(self, user_id: str, epoch: str, last: int) -> None:
        self.user_id = user_id
        self.epoch = epoch
        self.base = last
        self.last = last
        self.entries: deque[Entry] = deque()
        self.sizes: deque[int] = deque()  # estimated bytes of each entry
        self.bytes = 0
        self.waiters: list[asyncio.Future[None]] = []
        self.subscribers = 0
        self.error: Exception | None = None

    def add(self, rows: list[Entry], sizes: list[int], window: int) -> None:
        entries = self.entries
        for (n, item), size in zip(rows, sizes, strict=True):
            if n <= self.last:  # already here (a read repeated after a reconnect)
                continue
            entries.append((n, item))
            self.sizes.append(size)
            self.bytes += size
            self.last = n
        self.trim(window, WINDOW_BYTES)
        self.wake()

    def trim(self, window: int, window_bytes: int) -> None:
        """Keep at most ``window`` entries and ``window_bytes`` bytes (and the newest entry)."""
        entries = self.entries
        while len(entries) > 1 and (len(entries) > window or self.bytes > window_bytes):
            self.base = entries.popleft()[0]
            self.bytes -= self.sizes.popleft()

    def after(self, pos: int) -> list[Entry]:
        """The entries numbered above ``pos`` (``pos >= base``)."""
        entries = self.entries
        i = len(entries)
        while i > 0 and entries[i - 1][0] > pos:
            i -= 1
        return [entries[j] for j in range(i, len(entries))]

    def wake(self) -> None:
        waiters, self.waiters = self.waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def fail(self, error: Exception) -> None:
        self.error = error
        self.wake()


class Reading:
    """One subscriber's position: numbers delivered so far, and a pending foreign cursor."""

    __slots__ = ("epoch", "foreign", "pos", "user_id")

    def __init__(self, user_id: str, epoch: str, pos: int, foreign: str | None) -> None:
        self.user_id = user_id
        self.epoch = epoch
        self.pos = pos
        #: A cursor of a log that no longer exists: answered with the first ``events_lost``.
        self.foreign = foreign

    def gap(self, upto: int) -> EventGap:
        pos = self.pos
        foreign = self.foreign
        after = (
            self.foreign
            if self.foreign is not None
            else (None if pos == 0 else cursor_text(self.epoch, pos))
        )
        self.foreign = None
        upto = max(upto, pos)
        self.pos = upto
        return EventGap(
            user_id=self.user_id,
            after=after,
            cursor=cursor_text(self.epoch, upto),
            # From another log (an earlier life, another Redis): how much is gone is unknown.
            missed=None if foreign is not None else upto - pos,
        )

    def items(self, rows: list[Entry]) -> list[StreamItem]:
        """What to deliver for ``rows`` (each numbered above ``pos``): an ``EventGap`` for
        every run of missing numbers, then the events."""
        out: list[StreamItem] = []
        for n, item in rows:
            if n <= self.pos:
                continue
            missing_to = n if item is None else n - 1
            if missing_to > self.pos or self.foreign is not None:
                out.append(self.gap(missing_to))
            self.pos = n
            if item is not None:
                out.append(item)  # type: ignore[arg-type]  # parse_event gives a concrete type
        return out
