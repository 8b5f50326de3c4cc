"""``InMemoryEventSink``: the embedded default sink (and, being a real one, what tests use).

It keeps one bounded log per user, bounded in events and in bytes, and all
logs together within one byte budget. Each event gets a cursor, ``<epoch>-<n>``: the sink's
epoch (random, one per sink instance) and the event's position in that user's log. A subscriber
reads the log from a cursor onwards and then waits for more; a cursor of another epoch (an
earlier process, another sink) or without one (from before cursors had epochs) is answered
with an ``EventGap`` whose ``missed`` is unknown, then what is retained. Nothing is copied per
subscriber, so a slow subscriber never slows a run or the other subscribers: it just falls
behind. When it falls so far behind that retention dropped events it
asked for, it receives an ``EventGap`` saying which, never a silent skip.

A user's log with no subscriber and no run in flight is dropped once idle for ``idle_ttl``
seconds (``[engine] event_log_idle_seconds``). Idle logs are found without looking at the
others: the logs are kept in order of activity, and a sweep (a timer, and the creation of a
log) reads them from the least recently active until one is not idle.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections import OrderedDict, deque
from collections.abc import AsyncGenerator, Callable
from typing import cast

from agentengine.events import EVENT_OVERHEAD, BaseEvent, values_size, wire_size
from agentengine.ids import random_hex
from agentengine.sinks.protocol import LIVE, EventGap, StreamItem

__all__ = ["InMemoryEventSink"]

#: A cursor: ``<epoch>-<n>``, or a bare ``<n>`` (``"0"``, or a cursor from before epochs).
_CURSOR = re.compile(r"(?:([0-9a-f]{8})-)?([0-9]{1,18})")


class _UserLog:
    """One user's retained events: ``entries[i]`` has cursor ``first + i``; ``room`` is the
    byte retention less the sum of their ``wire_size``. ``active`` is when the log was last
    seen in use (the sink's clock), ``seen`` its ``next_cursor`` then: publishing does not
    touch the clock, a sweep finding ``next_cursor`` moved on counts it as active then."""

    __slots__ = (
        "active",
        "counted",
        "entries",
        "first",
        "origin",
        "room",
        "seen",
        "subscribers",
        "waiters",
    )

    def __init__(
        self, retention: int, room: int, first: int, now: float, counted: bool = True
    ) -> None:
        self.entries: deque[BaseEvent] = deque(maxlen=retention)
        self.first = first  # cursor number of entries[0]
        self.origin = first  # cursor number of the log's first event
        # Whether the cursors below ``origin`` are this user's own (its earlier log's
        # numbering was remembered), so that how many of them a resuming subscriber missed
        # is known; else they may be any forgotten log's, and the count is not.
        self.counted = counted
        self.room = room
        self.waiters: list[asyncio.Future[None]] = []
        self.subscribers = 0
        self.active = now
        self.seen = first

    def touch(self, now: float) -> None:
        """Record the log as in use at ``now``."""
        self.active = now
        self.seen = self.next_cursor

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

    ``retention`` is how many events each user's log keeps, ``retention_bytes`` how many bytes
    (the events' ``wire_size``); the oldest go first, and the newest event is always kept.
    ``total_bytes`` bounds all logs together: beyond it, the oldest events of the least recently
    active users go first (whether or not they have subscribers; one behind gets an
    ``EventGap``). ``max_users`` is how many users' logs are kept at once: beyond it, the least
    recently active log without a live subscriber is dropped. A dropped log's cursor numbering
    is remembered (for the last ``max_users`` dropped logs; beyond that, numbering restarts above
    every forgotten cursor), so a later subscriber resuming from an old cursor is told what it
    missed (an ``EventGap``) rather than confused. Dropped events are released at once: the sink
    keeps no reference to them.

    Cursors are ``<epoch>-<n>`` (opaque to clients): ``epoch`` is random per sink instance, so
    a cursor from an earlier process or another sink is recognised, and its subscriber gets an
    ``EventGap`` with ``missed=None`` (the history it points into is gone), then what is
    retained: never a silent skip.

    ``idle_ttl``: a log with no subscriber and no run in flight (``busy(user_id)`` false; the
    factory passes one that asks its engines and run table) is dropped once idle for that
    many seconds, as a log dropped for ``max_users`` is (its numbering remembered: a resuming
    subscriber gets an ``EventGap``). A log counts as idle from its last subscriber leaving,
    its creation, or the sweep that last found it published to or busy, so it is dropped
    between ``idle_ttl`` and about twice that after it was last used, never before. Sweeps
    run on a timer (every ``idle_ttl / 2`` at most, at least every 60 s) and as logs are
    created; ``evict_idle()`` runs one. ``None``: logs are kept until ``max_users`` or the
    byte budgets drop them. ``clock``: the time source (``time.monotonic``; tests pass
    their own).
    """

    def __init__(
        self,
        retention: int = 10_000,
        max_users: int = 10_000,
        *,
        retention_bytes: int = 8 * 1024 * 1024,
        total_bytes: int = 256 * 1024 * 1024,
        idle_ttl: float | None = None,
        busy: Callable[[str], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if retention < 1:
            raise ValueError("retention must be at least 1")
        if max_users < 1:
            raise ValueError("max_users must be at least 1")
        if retention_bytes < 1 or total_bytes < 1:
            raise ValueError("retention_bytes and total_bytes must be at least 1")
        if idle_ttl is not None and not idle_ttl > 0:
            raise ValueError(
                f"idle_ttl must be a positive number of seconds or None, not {idle_ttl!r}"
            )
        self.retention = retention
        self.max_users = max_users
        self.retention_bytes = retention_bytes
        self.total_bytes = total_bytes
        self.idle_ttl = idle_ttl
        self._busy = busy
        self._clock = clock
        # When the next sweep is due (log creation checks it), and the timer of quiet times.
        self._sweep_due = float("inf") if idle_ttl is None else clock() + self.sweep_interval
        self._timer: asyncio.TimerHandle | None = None
        #: Logs dropped by ``evict_idle`` so far.
        self.evicted = 0
        self._logs: OrderedDict[str, _UserLog] = OrderedDict()
        # user -> next cursor of a dropped log, oldest first, at most max_users of them
        self._dropped: OrderedDict[str, int] = OrderedDict()
        # Above every forgotten next cursor: where a log starts whose user was forgotten.
        self._floor = 1
        # total_bytes less the bytes retained over all logs, the newest log's counted as they
        # were when it became the newest (its room was then ``_mark``): publishing to the
        # newest log, the common case, updates that log's room alone. Its room going under
        # ``_alarm`` means that its own budget or the total may be exceeded (``_over``).
        self._room = total_bytes
        self._mark = 0
        self._alarm = 0
        self._closed = False
        self._newest_user: str | None = None  # whose log is at the end of _logs
        self._newest_log: _UserLog | None = None  # and that log
        self._published_before = 0  # events of logs since dropped
        #: Names this sink's logs in every cursor it hands out (``<epoch>-<n>``): a cursor of
        #: another sink, such as the one of an earlier process, is told apart from its own.
        self.epoch = random_hex()[:8]
        self._prefix = f"{self.epoch}-"

    @property
    def published(self) -> int:
        """How many events were published (counted from the logs' cursors, not on the hot
        path)."""
        return self._published_before + sum(
            log.next_cursor - log.origin for log in self._logs.values()
        )

    @property
    def retained_bytes(self) -> int:
        """Bytes of events retained over all users (the sum of their ``wire_size``)."""
        newest = self._newest_log
        pending = 0 if newest is None else self._mark - newest.room
        return self.total_bytes - self._room + pending

    def _settle(self) -> None:
        """Count the newest log's change since it became the newest into ``_room``: before
        anything else reads ``_room`` or the newest log changes."""
        newest = self._newest_log
        if newest is not None:
            self._room += newest.room - self._mark
            self._mark = newest.room

    def _watch(self, user_id: str, log: _UserLog) -> None:
        """Make ``log`` (settled) the newest, and set the alarm for its publishes."""
        self._newest_user = user_id
        self._newest_log = log
        self._mark = log.room
        # Its room under 0: its own budget is exceeded; under _mark - _room: the total is.
        self._alarm = max(0, log.room - self._room)

    def _over(self, log: _UserLog) -> None:
        """The newest log's room went under the alarm: drop what its own byte retention, then
        the total, no longer holds."""
        self._settle()
        entries = log.entries
        while log.room < 0 and len(entries) > 1:  # retention by bytes: never the newest event
            self._pop_oldest(log)
        if self._room < 0:
            self._shrink(log)
        newest = self._newest_log
        if newest is not None:  # _shrink may have moved the logs around
            self._alarm = max(0, newest.room - self._room)

    def _pop_oldest(self, log: _UserLog) -> None:
        """Drop ``log``'s oldest event (the sink settled)."""
        size = wire_size(log.entries.popleft())
        log.first += 1
        log.room += size
        self._room += size
        if log is self._newest_log:
            self._mark += size  # still settled

    def _log(self, user_id: str) -> _UserLog:
        log = self._logs.get(user_id)
        if log is None:
            now = self._clock()
            if now >= self._sweep_due:  # amortised: at most one sweep per interval
                self.evict_idle(now)
            first = self._dropped.pop(user_id, None)
            counted = first is not None or self._floor == 1
            log = self._logs[user_id] = _UserLog(
                self.retention,
                self.retention_bytes,
                self._floor if first is None else first,
                now,
                counted,
            )
            self._settle()
            self._watch(user_id, log)
            if len(self._logs) > self.max_users:
                self._drop_idle(keep=user_id)
            if self._timer is None and self.idle_ttl is not None:
                self._arm()
        return log

    # -- idle logs ------------------------------------------------------------------------

    @property
    def sweep_interval(self) -> float:
        """Seconds between sweeps for idle logs: half of ``idle_ttl``, within 0.05 to 60."""
        return 60.0 if self.idle_ttl is None else max(0.05, min(60.0, self.idle_ttl / 2))

    def _arm(self) -> None:
        """Start the sweep timer (when there is a running loop: else the next log's creation
        sweeps, and arms it)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._timer = loop.call_later(self.sweep_interval, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._closed:
            return
        self.evict_idle()
        if self._logs:  # nothing left to sweep: the next log's creation arms it again
            self._arm()

    def evict_idle(self, now: float | None = None) -> int:
        """Drop the logs idle for ``idle_ttl`` seconds (see the class docs) and return how
        many. Cheap: reads the logs from the least recently active and stops at the first
        that is not idle; one found in use is counted as active now and moved to the end."""
        ttl = self.idle_ttl
        if ttl is None:
            return 0
        if now is None:
            now = self._clock()
        self._sweep_due = now + self.sweep_interval
        deadline = now - ttl
        logs = self._logs
        busy = self._busy
        self._settle()
        dropped = 0
        moved = False
        # Each log is looked at once: one found in use goes to the end, with a fresh stamp.
        for _ in range(len(logs)):
            user_id, log = next(iter(logs.items()))
            if log.active > deadline:
                # Every later log was published to or touched after this one: none is idle.
                break
            if log.subscribers or log.next_cursor != log.seen or (busy and busy(user_id)):
                log.touch(now)
                logs.move_to_end(user_id)
                moved = True
                continue
            self._forget(user_id, log)
            dropped += 1
        if moved and self._newest_log is not None:
            # The log at the end is no longer the newest one: settled above, forget which it was.
            self._newest_user = self._newest_log = None
        self.evicted += dropped
        return dropped

    def _drop_idle(self, keep: str) -> None:
        for user_id, log in self._logs.items():  # least recently active first
            if log.subscribers == 0 and user_id != keep:
                self._forget(user_id, log)
                return

    def _forget(self, user_id: str, log: _UserLog) -> None:
        """Drop a log without subscribers, remembering where its numbering stopped (the sink
        settled)."""
        del self._logs[user_id]
        self._room += self.retention_bytes - log.room
        self._published_before += log.next_cursor - log.origin
        if self._newest_log is log:
            self._newest_user = self._newest_log = None
        dropped = self._dropped
        dropped[user_id] = log.next_cursor
        if len(dropped) > self.max_users:  # forget the oldest numbering, bounded memory
            _, cursor = dropped.popitem(last=False)
            self._floor = max(self._floor, cursor)

    def _shrink(self, current: _UserLog) -> None:
        """Drop the oldest events of the least recently active logs until all logs fit
        ``total_bytes`` (``current``, just published to, keeps its newest event; the sink
        settled)."""
        emptied: list[tuple[str, _UserLog]] = []
        for user_id, log in self._logs.items():  # least recently active first
            entries = log.entries
            while self._room < 0 and entries and (log is not current or len(entries) > 1):
                self._pop_oldest(log)
            if not entries:
                emptied.append((user_id, log))
            if self._room >= 0:
                break
        for user_id, log in emptied:
            if log is current:
                continue
            if log.subscribers == 0:
                self._forget(user_id, log)
            else:  # keep the numbering for its subscribers, out of the way of the next pass
                self._logs.move_to_end(user_id)
                if self._newest_log is not log:
                    self._newest_user = self._newest_log = None

    def publish(self, event: BaseEvent) -> None:
        # Attributes of a pydantic model are read through its ``__getattr__`` hook, several
        # times the cost of a dict lookup: the field dict is read once, the fields from it.
        data = event.__dict__
        user_id = data["user_id"]
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
                # _settle() and _watch() written out: users taking turns (many users at once)
                # come this way on every publish.
                newest = self._newest_log
                if newest is not None:
                    self._room += newest.room - self._mark
                self._newest_user = user_id
                self._newest_log = log
                self._mark = room = log.room
                self._alarm = room - self._room if room > self._room else 0
        # ``size`` becomes what this publish adds to the log's bytes (``wire_size``).
        try:
            size = event._values_size  # set by the engine as it built the event
        except AttributeError:
            size = values_size(event)
        entries = log.entries
        count = len(entries)
        cursor = log.first + count
        if count == entries.maxlen:
            # Retention by count: the oldest goes (append drops it) and gives its bytes back;
            # the two events' EVENT_OVERHEAD cancels out (so commonly no int is made here).
            oldest = entries[0]
            try:
                size -= oldest._values_size
            except AttributeError:
                size -= values_size(oldest)
            log.first += 1
        else:
            size += EVENT_OVERHEAD
        # Written straight into the model's dict: pydantic's __setattr__ costs more than the rest
        # of publishing, and the value is ours (a str), so there is nothing to validate.
        data["cursor"] = f"{self._prefix}{cursor}"
        entries.append(event)
        # Byte budgets count down: one comparison on the hot path covers the log's budget and
        # the total (see ``_room``).
        room = log.room - size
        log.room = room
        if room < self._alarm:
            self._over(log)
        if log.waiters:
            log.wake()

    def _cursor(self, number: int) -> str:
        """The cursor of position ``number`` of a log of this sink."""
        return f"{self._prefix}{number}"

    def _start(self, after: str | None, user_id: str, log: _UserLog) -> tuple[int, str | None]:
        """Where a subscription with ``after`` starts: the last position it has (0: before
        everything), and ``after`` again when it is a cursor of another log (the subscriber
        is told so with a gap first). ``ValueError`` naming ``after`` when it is unusable."""
        if after is None:
            return 0, None
        if after == LIVE:
            return log.next_cursor - 1, None
        match = _CURSOR.fullmatch(after) if isinstance(after, str) else None
        if match is None:
            raise ValueError(
                f"invalid cursor {after!r} for user {user_id!r}: pass the 'cursor' of an event "
                f"this sink delivered, None (or '0') for everything retained, or {LIVE!r} for "
                "only new events"
            )
        epoch, number = match.group(1), int(match.group(2))
        if epoch is None and number == 0:
            return 0, None
        if epoch != self.epoch:
            # Another log's cursor (another process's sink, an earlier life of this one, or
            # a bare number from before cursors named their log): its position means nothing
            # here, and whatever followed it is gone.
            return 0, after
        if number >= log.next_cursor:
            # Waiting here would silently skip every event until the log caught up with it.
            newest = self._cursor(log.next_cursor - 1)
            raise ValueError(
                f"cursor {after!r} is ahead of user {user_id!r}'s newest event (cursor "
                f"{newest}): it is no cursor this sink delivered to that user; subscribe with "
                "after=None to read everything retained"
            )
        return number, None

    def latest_cursor(self, user_id: str) -> str | None:
        """The cursor of the user's newest event (None when there is none)."""
        log = self._logs.get(user_id)
        if log is None or not log.entries:
            return None
        return self._cursor(log.next_cursor - 1)

    def subscribe(self, user_id: str, after: str | None = None) -> AsyncGenerator[StreamItem, None]:
        """Yield the user's events after ``after``, then live ones, until the sink closes (a
        closed sink still yields what it retained, then ends).

        Where it starts is fixed by this call (``LIVE``: the events published after it), and
        an unusable ``after`` is refused here, with ``ValueError``. A cursor of another log
        first yields an ``EventGap`` (``missed=None``), then everything retained.
        """
        log = self._log(user_id)
        position, foreign = self._start(after, user_id, log)
        if foreign is None and 0 < position < log.origin - 1 and not log.counted:
            # A cursor from before this log whose numbering was forgotten: how much it missed
            # is unknown (another log's cursor, as far as this one can tell).
            foreign = after
        return self._follow(user_id, position, foreign)

    async def _follow(
        self, user_id: str, position: int, foreign: str | None
    ) -> AsyncGenerator[StreamItem, None]:
        """``subscribe``'s stream from ``position`` (the last position delivered)."""
        # The log again: it may have been dropped (its numbering kept) since subscribe().
        log = self._log(user_id)
        loop = asyncio.get_running_loop()
        log.subscribers += 1  # a log with subscribers is never dropped
        try:
            if foreign is not None:
                position = log.first - 1
                yield EventGap(
                    user_id=user_id, after=foreign, cursor=self._cursor(position), missed=None
                )
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
                        after=None if position == 0 else self._cursor(position),
                        cursor=self._cursor(gap_end),
                        missed=gap_end - position,
                    )
                    position = gap_end
                    continue
                # Deliver what is there now, as one snapshot: indexing a deque is linear, and
                # the events held by the snapshot stay valid if retention drops them meanwhile.
                # (The sink holds the engine's events: each is one of StreamItem's types.)
                batch = cast(
                    "list[StreamItem]",
                    list(itertools.islice(log.entries, position + 1 - log.first, None)),
                )
                for item in batch:
                    yield item
                position += len(batch)
        finally:
            log.subscribers -= 1
            if not log.subscribers:
                # Idle from now on as far as readers go. The log keeps its place in the order
                # of activity (which the budgets drop by), so a sweep may stop at it a while
                # before reaching idle logs behind it: they go late, never early.
                log.touch(self._clock())

    def retained(self, user_id: str) -> list[BaseEvent]:
        """A snapshot of the user's retained events."""
        log = self._logs.get(user_id)
        return list(log.entries) if log is not None else []

    def users(self) -> list[str]:
        """Users with a retained log."""
        return list(self._logs)

    async def aclose(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for log in self._logs.values():
            log.wake()
