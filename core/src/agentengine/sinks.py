"""Event sinks: where a run's events go, and how a user's subscribers read them.

The sink is a layer with a small interface (``EventSink``), chosen by the
``agentengine_event_sink`` hook. The built-in ``InMemoryEventSink`` is the embedded default and,
being a real implementation, also what tests use.

The in-memory sink keeps one bounded log per user. Each event gets a cursor (its position in
that user's log, as a string); a subscriber reads the log from a cursor onwards and then waits
for more. Nothing is copied per subscriber, so a slow subscriber never slows a run or the other
subscribers: it just falls behind. When it falls so far behind that retention dropped events it
asked for, it receives an ``EventGap`` saying which, never a silent skip.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from agentengine.events import BaseEvent

__all__ = ["EventGap", "EventSink", "InMemoryEventSink", "StreamItem"]


class EventGap(BaseModel):
    """Sent to a subscriber in place of events that retention already dropped.

    ``missed`` events between ``after`` (exclusive) and ``cursor`` (inclusive) are gone; the
    stream continues after ``cursor``. Resume from ``cursor`` to skip them knowingly.
    """

    model_config = ConfigDict(frozen=True)

    type: Literal["events_lost"] = "events_lost"
    user_id: str
    after: str | None
    cursor: str
    missed: int

    def to_wire(self) -> dict[str, Any]:
        """The JSON wire form."""
        return self.model_dump(mode="json")


StreamItem = BaseEvent | EventGap


@runtime_checkable
class EventSink(Protocol):
    """Where events go. ``publish`` must not block: a sink that needs I/O buffers and sends in
    the background, and reports (logs, counts) anything it cannot deliver."""

    def publish(self, event: BaseEvent) -> None:
        """Accept one event; set ``event.cursor``."""

    def subscribe(self, user_id: str, after: str | None = None) -> AsyncIterator[StreamItem]:
        """The user's retained events after ``after`` (all when None), then live ones."""

    async def aclose(self) -> None:
        """Release resources; end live subscriptions."""


class _UserLog:
    """One user's retained events: ``entries[i]`` has cursor ``first + i``."""

    __slots__ = ("entries", "first", "subscribers", "waiters")

    def __init__(self, retention: int, first: int = 1) -> None:
        self.entries: deque[BaseEvent] = deque(maxlen=retention)
        self.first = first  # cursor number of entries[0]
        self.waiters: list[asyncio.Future[None]] = []
        self.subscribers = 0

    @property
    def next_cursor(self) -> int:
        return self.first + len(self.entries)

    def wake(self) -> None:
        """Wake the subscribers waiting for the next event."""
        waiters, self.waiters = self.waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)


class InMemoryEventSink:
    """Per-user bounded event logs in this process, with cursors for resuming.

    ``retention`` is how many events each user's log keeps; ``max_users`` how many users' logs
    are kept at once. Beyond it, the least recently active log without a live subscriber is
    dropped; its cursor numbering is remembered, so a later subscriber resuming from an old
    cursor is told what it missed (an ``EventGap``) rather than confused.
    """

    def __init__(self, retention: int = 10_000, max_users: int = 10_000) -> None:
        if retention < 1:
            raise ValueError("retention must be at least 1")
        if max_users < 1:
            raise ValueError("max_users must be at least 1")
        self.retention = retention
        self.max_users = max_users
        self._logs: OrderedDict[str, _UserLog] = OrderedDict()
        self._dropped: dict[str, int] = {}  # user -> next cursor of a dropped log
        self._closed = False
        self._newest_user: str | None = None  # whose log is at the end of _logs
        self._newest_log: _UserLog | None = None  # and that log
        self.published = 0

    def _log(self, user_id: str) -> _UserLog:
        log = self._logs.get(user_id)
        if log is None:
            log = self._logs[user_id] = _UserLog(self.retention, self._dropped.pop(user_id, 1))
            self._newest_user = user_id
            self._newest_log = log
            if len(self._logs) > self.max_users:
                self._drop_idle(keep=user_id)
        return log

    def _drop_idle(self, keep: str) -> None:
        for user_id, log in self._logs.items():  # least recently active first
            if log.subscribers == 0 and user_id != keep:
                self._dropped[user_id] = log.next_cursor
                del self._logs[user_id]
                return

    def publish(self, event: BaseEvent) -> None:
        user_id = event.user_id
        if user_id == self._newest_user:  # the same user as last time: already at the end
            log = self._newest_log
            assert log is not None
        else:
            found = self._logs.get(user_id)
            if found is None:
                log = self._log(user_id)
            else:
                log = found
                self._logs.move_to_end(user_id)  # keep _logs in order of activity (LRU)
                self._newest_user = user_id
                self._newest_log = log
        entries = log.entries
        size = len(entries)
        cursor = log.first + size
        if size == entries.maxlen:
            log.first += 1
        # Written straight into the model's dict: pydantic's __setattr__ costs more than the rest
        # of publishing, and the value is ours (a str), so there is nothing to validate.
        event.__dict__["cursor"] = str(cursor)
        entries.append(event)
        if log.waiters:
            log.wake()
        self.published += 1

    @staticmethod
    def _parse_cursor(after: str | None, user_id: str) -> int:
        if after is None:
            return 0
        try:
            value = int(after)
        except (TypeError, ValueError):
            raise ValueError(
                f"invalid cursor {after!r} for user {user_id!r}: pass the 'cursor' of an event "
                "this sink delivered, or None for everything retained"
            ) from None
        if value < 0:
            raise ValueError(f"invalid cursor {after!r}: cursors are not negative")
        return value

    def latest_cursor(self, user_id: str) -> str | None:
        """The cursor of the user's newest event (None when there is none)."""
        log = self._logs.get(user_id)
        if log is None or not log.entries:
            return None
        return str(log.next_cursor - 1)

    async def subscribe(self, user_id: str, after: str | None = None) -> AsyncIterator[StreamItem]:
        """Yield the user's events after ``after``, then live ones, until the sink closes (a
        closed sink still yields what it retained, then ends)."""
        position = self._parse_cursor(after, user_id)  # last cursor number delivered
        log = self._log(user_id)
        if position >= log.next_cursor:
            # Waiting here would silently skip every event until the log caught up with it.
            newest = log.next_cursor - 1
            raise ValueError(
                f"cursor {after!r} is ahead of user {user_id!r}'s newest event (cursor "
                f"{newest}): it comes from another event stream (an earlier process, another "
                "sink); subscribe with after=None to read everything retained"
            )
        loop = asyncio.get_running_loop()
        log.subscribers += 1  # a log with subscribers is never dropped
        try:
            while True:
                if position + 1 >= log.next_cursor:  # caught up: wait for the next event
                    if self._closed:
                        # Closing ends the stream only once the subscriber has everything that
                        # was published before the close (the terminal events of drained runs).
                        return
                    fut: asyncio.Future[None] = loop.create_future()
                    log.waiters.append(fut)
                    try:
                        await fut
                    finally:
                        if not fut.done():
                            fut.cancel()
                            log.waiters.remove(fut)
                    continue
                if position + 1 < log.first:
                    gap_end = log.first - 1
                    yield EventGap(
                        user_id=user_id,
                        after=None if position == 0 else str(position),
                        cursor=str(gap_end),
                        missed=gap_end - position,
                    )
                    position = gap_end
                    continue
                # Deliver what is there now, as one snapshot: indexing a deque is linear, and
                # the events held by the snapshot stay valid if retention drops them meanwhile.
                batch = list(itertools.islice(log.entries, position + 1 - log.first, None))
                for item in batch:
                    yield item
                position += len(batch)
        finally:
            log.subscribers -= 1

    def retained(self, user_id: str) -> list[BaseEvent]:
        """A snapshot of the user's retained events."""
        log = self._logs.get(user_id)
        return list(log.entries) if log is not None else []

    def users(self) -> list[str]:
        """Users with a retained log."""
        return list(self._logs)

    async def aclose(self) -> None:
        self._closed = True
        for log in self._logs.values():
            log.wake()
