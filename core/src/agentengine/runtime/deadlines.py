"""Deadlines for runs and tool calls, on one timer per event loop.

``asyncio.timeout`` arms a timer handle per use; with two deadlines per run (the run's and its
tool call's) that was the largest single cost of a run, and the cancelled handles piled up in
the loop's heap when runs did not suspend. Here every deadline is an entry in one heap per
scheduler, and a single timer handle is armed for the earliest one.

Most blocks end before they ever suspend (a run that does not wait on I/O), and a timer can
only fire between steps of the event loop, so such a block cannot expire. Entering a deadline
therefore only notes it in a list; at the end of the loop step (one ``call_soon`` per step, for
every deadline entered in it) the ones still open go into the heap, and the timer is re-armed
only when one is meaningfully earlier than the armed one. Leaving a deadline is a flag.
Finished entries are dropped from the heap lazily (compacted when they are the majority), so
memory stays proportional to deadlines in flight.

The semantics are those of ``asyncio.timeout``: on expiry the task is cancelled, and leaving the
block converts that cancellation into ``TimeoutError``; ``expired()`` tells the two apart. As
with ``asyncio.timeout``, the conversion happens only when no other cancellation was asked for
meanwhile: a cancel that races the deadline (``handle.cancel()`` as a tool times out) wins, and
the block ends with ``CancelledError``. The task's count of cancellation requests
(``Task.cancelling()``) is noted when the deadline enters the heap, which only a block that
suspends reaches (one that never suspends cannot expire).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

__all__ = ["Deadline", "DeadlineScheduler", "current_task"]

if sys.version_info < (3, 12):
    # CPython 3.11's asyncio.current_task() is Python code around this dict lookup; the run
    # path asks twice per run. 3.12 made current_task() itself fast.
    _current_tasks: dict[asyncio.AbstractEventLoop, asyncio.Task[Any]] = vars(asyncio.tasks)[
        "_current_tasks"
    ]

    #: The task running on ``loop`` (the running loop), or None: the dict's own ``get``, not a
    #: function around it (a Python call less each time).
    current_task: Callable[[asyncio.AbstractEventLoop], asyncio.Task[Any] | None] = (
        _current_tasks.get
    )

else:  # pragma: no cover - exercised on 3.12+

    def current_task(loop: asyncio.AbstractEventLoop) -> asyncio.Task[Any] | None:
        """The task running on ``loop`` (the running loop), or None."""
        return asyncio.current_task(loop)


_COMPACT_MIN = 1024


class Deadline:
    """An async context manager: cancel the task if the block outlives ``delay`` seconds."""

    __slots__ = (
        "_cancelling",
        "_done",
        "_expired",
        "_queued",
        "_scheduler",
        "_task",
        "delay",
        "when",
    )

    def __init__(
        self, scheduler: DeadlineScheduler, delay: float, task: asyncio.Task[Any] | None = None
    ) -> None:
        self._scheduler = scheduler
        self.delay = delay
        self.when = 0.0
        self._task = task
        self._expired = False
        self._done = False
        self._queued = False  # in the scheduler's heap
        self._cancelling = 0  # the task's cancellation requests when it entered the heap

    def expired(self) -> bool:
        """True when the deadline passed and cancelled the block."""
        return self._expired

    # A plain (synchronous) context manager: entering and leaving never needs to await, and
    # sparing the two coroutines of ``async with`` matters on the run path. ``async with`` works
    # too, for symmetry with ``asyncio.timeout``.
    def __enter__(self) -> Deadline:
        loop = asyncio.get_running_loop()
        if self._task is None:
            task = current_task(loop)
            if task is None:
                raise RuntimeError("a deadline must be used inside a task")
            self._task = task
        scheduler = self._scheduler
        if loop is not scheduler._loop:  # first use, or a new loop (tests): start afresh
            scheduler._reset(loop)
        self.when = scheduler._clock() + self.delay
        if not scheduler._scheduled:
            scheduler._scheduled = True
            loop.call_soon(scheduler._register)
        scheduler._entered.append(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._done = True
        if self._queued:
            self._scheduler._finished += 1
        else:
            entered = self._scheduler._entered
            if entered and entered[-1] is self:  # blocks nest: the last one entered ends first
                entered.pop()
        if self._expired and exc_type is asyncio.CancelledError:
            assert self._task is not None
            if self._task.uncancel() > self._cancelling:
                return  # someone else asked to cancel too: that cancellation goes on
            raise TimeoutError from exc

    async def __aenter__(self) -> Deadline:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)


class DeadlineScheduler:
    """One heap of deadlines and one timer handle, for one event loop."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Deadline]] = []
        self._counter = itertools.count()
        self._handle: asyncio.TimerHandle | None = None
        self._armed_at = float("inf")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clock: Callable[[], float] = time.monotonic  # the loop's time(), see _reset
        self._entered: list[Deadline] = []  # entered during this loop step, not in the heap yet
        self._finished = 0  # finished deadlines still in the heap
        self._scheduled = False  # a _register call is pending

    def deadline(self, delay: float, task: asyncio.Task[Any] | None = None) -> Deadline:
        """``with scheduler.deadline(5.0) as d: ...`` (inside a task); then ``d.expired()``.

        ``task`` is the task the block runs in, when the caller knows it (saves looking it
        up); it must be the current task.
        """
        return Deadline(self, delay, task)

    def _register(self) -> None:
        """At the end of a loop step: put the deadlines entered in it that are still open into
        the heap, and arm the timer for the earliest."""
        entered, self._entered = self._entered, []
        self._scheduled = False
        loop = self._loop
        if loop is None:
            return
        heap = self._heap
        counter = self._counter
        earliest = self._armed_at - 0.001
        for deadline in entered:
            if not deadline._done:
                when = deadline.when
                deadline._queued = True
                task = deadline._task
                if task is not None:
                    deadline._cancelling = task.cancelling()
                heapq.heappush(heap, (when, next(counter), deadline))
                earliest = min(earliest, when)
        # Re-arm only for a deadline earlier than the armed one by more than a millisecond:
        # equal timeouts arrive in increasing order and never re-arm.
        if earliest < self._armed_at - 0.001:
            self._arm(loop, earliest)
        if self._finished > _COMPACT_MIN and self._finished * 2 > len(heap):
            self._compact()

    def _reset(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._loop = loop
        # asyncio's own loop.time() is Python code returning time.monotonic(): that is called
        # directly then (a call less per deadline); another loop's time() is used as it is.
        native = getattr(loop.time, "__func__", None) is asyncio.BaseEventLoop.time
        self._clock = time.monotonic if native else loop.time
        self._heap = []
        self._handle = None
        self._armed_at = float("inf")
        self._entered = []
        self._scheduled = False
        self._finished = 0

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._armed_at = when
        self._handle = loop.call_at(when, self._fire)

    def _compact(self) -> None:
        self._heap = [entry for entry in self._heap if not entry[2]._done]
        heapq.heapify(self._heap)
        self._finished = 0

    def _fire(self) -> None:
        loop = self._loop
        assert loop is not None
        self._handle = None
        self._armed_at = float("inf")
        now = loop.time()
        heap = self._heap
        while heap and (heap[0][0] <= now or heap[0][2]._done):
            _, _, deadline = heapq.heappop(heap)
            if deadline._done:
                self._finished -= 1
                continue
            deadline._queued = False
            task = deadline._task
            if task is not None and not task.done():
                deadline._expired = True
                task.cancel()
        if heap:
            self._arm(loop, heap[0][0])

    def pending(self) -> int:
        """Deadlines not yet finished (for tests and metrics)."""
        return sum(1 for _, _, d in self._heap if not d._done) + sum(
            1 for d in self._entered if not d._done
        )
