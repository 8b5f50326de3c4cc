"""Concurrency limits: per user (shared by all of that user's engines) and global.

Written out rather than built from ``asyncio.Semaphore``s: the common case, a free slot, is a
couple of dictionary operations with no coroutine at all, and a waiting run is woken with its
slot already assigned, so no later arrival can take it first.

Fairness: a run waits either for its user's slot (the user is at ``per_user``) or for a
global one; a user at their own limit never blocks other users, and runs of one user are
admitted in arrival order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

__all__ = ["ConcurrencyLimiter"]


class ConcurrencyLimiter:
    """At most ``per_user`` concurrent runs per user id and ``global_limit`` in all.

    Keyed by user id, not by engine: two engines of one user share one budget. State exists
    only for users with runs in flight or waiting, so idle users cost nothing.
    """

    def __init__(self, per_user: int, global_limit: int) -> None:
        if per_user < 1 or global_limit < 1:
            raise ValueError("concurrency limits must be at least 1")
        self.per_user = per_user
        self.global_limit = global_limit
        self._running: dict[str, int] = {}
        self._total = 0
        self._user_waiters: dict[str, deque[asyncio.Future[None]]] = {}
        self._global_waiters: deque[tuple[str, asyncio.Future[None]]] = deque()

    def try_acquire(self, user_id: str) -> bool:
        """Take a slot now if one is free (and nobody is queued ahead); True if taken.

        The run path calls this first and awaits ``acquire`` only when it returns False,
        sparing a coroutine per run in the common case.
        """
        running = self._running.get(user_id, 0)
        if (
            running < self.per_user
            and self._total < self.global_limit
            and not self._global_waiters
            and user_id not in self._user_waiters
        ):
            self._running[user_id] = running + 1
            self._total += 1
            return True
        return False

    async def acquire(self, user_id: str) -> None:
        """Wait for a slot of ``user_id`` and a global one. Pair with ``release``."""
        if self.try_acquire(user_id):
            return
        running = self._running.get(user_id, 0)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if running >= self.per_user or user_id in self._user_waiters:
            self._user_waiters.setdefault(user_id, deque()).append(fut)
        else:
            self._global_waiters.append((user_id, fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release(user_id)  # granted just as we were cancelled: give it back
            else:
                self._forget(user_id, fut)
            raise

    def release(self, user_id: str) -> None:
        """Give back the slots taken by ``acquire``; hand them to waiting runs."""
        self._total -= 1
        running = self._running[user_id] - 1
        if running:
            self._running[user_id] = running
        else:
            del self._running[user_id]
        if self._user_waiters or self._global_waiters:
            self._dispatch(user_id)

    def _grant(self, user_id: str, fut: asyncio.Future[None]) -> None:
        self._running[user_id] = self._running.get(user_id, 0) + 1
        self._total += 1
        fut.set_result(None)

    def _dispatch(self, user_id: str) -> None:
        queue = self._user_waiters.get(user_id)
        while queue and self._running.get(user_id, 0) < self.per_user:
            fut = queue.popleft()
            if fut.done():  # cancelled while waiting
                continue
            if self._total < self.global_limit:
                self._grant(user_id, fut)
            else:
                self._global_waiters.append((user_id, fut))
        if queue is not None and not queue:
            del self._user_waiters[user_id]
        while self._global_waiters and self._total < self.global_limit:
            waiting_user, fut = self._global_waiters.popleft()
            if fut.done():
                continue
            if self._running.get(waiting_user, 0) < self.per_user:
                self._grant(waiting_user, fut)
            else:
                self._user_waiters.setdefault(waiting_user, deque()).appendleft(fut)

    def _forget(self, user_id: str, fut: asyncio.Future[None]) -> None:
        queue = self._user_waiters.get(user_id)
        if queue is not None and fut in queue:
            queue.remove(fut)
            if not queue:
                del self._user_waiters[user_id]
        else:
            with contextlib.suppress(ValueError):  # already handed on by _dispatch
                self._global_waiters.remove((user_id, fut))

    def active_users(self) -> int:
        """Users with runs holding or waiting for a slot."""
        return len(self._running.keys() | self._user_waiters.keys())

    def running(self, user_id: str | None = None) -> int:
        """Runs holding a slot: of ``user_id``, or in all."""
        return self._total if user_id is None else self._running.get(user_id, 0)
