"""Concurrency limits: per user (shared by all of that user's engines) and global."""

from __future__ import annotations

import asyncio

__all__ = ["ConcurrencyLimiter"]


class _UserSlot:
    __slots__ = ("semaphore", "users")

    def __init__(self, limit: int) -> None:
        self.semaphore = asyncio.Semaphore(limit)
        self.users = 0  # runs holding or waiting for this slot; the entry is dropped at 0


class ConcurrencyLimiter:
    """At most ``per_user`` concurrent runs per user id and ``global_limit`` in all.

    Keyed by user id, not by engine: two engines of one user share one budget. Entries exist
    only while a user has runs, so idle users cost nothing.
    """

    def __init__(self, per_user: int, global_limit: int) -> None:
        if per_user < 1 or global_limit < 1:
            raise ValueError("concurrency limits must be at least 1")
        self.per_user = per_user
        self.global_limit = global_limit
        self._global = asyncio.Semaphore(global_limit)
        self._users: dict[str, _UserSlot] = {}

    async def acquire(self, user_id: str) -> None:
        """Wait for a slot of ``user_id`` and a global one. Pair with ``release``."""
        slot = self._users.get(user_id)
        if slot is None:
            slot = self._users[user_id] = _UserSlot(self.per_user)
        slot.users += 1
        try:
            await slot.semaphore.acquire()
        except BaseException:
            self._drop(user_id, slot)
            raise
        try:
            await self._global.acquire()
        except BaseException:
            slot.semaphore.release()
            self._drop(user_id, slot)
            raise

    def release(self, user_id: str) -> None:
        """Give back the slots taken by ``acquire``."""
        self._global.release()
        slot = self._users[user_id]
        slot.semaphore.release()
        self._drop(user_id, slot)

    def _drop(self, user_id: str, slot: _UserSlot) -> None:
        slot.users -= 1
        if slot.users == 0:
            del self._users[user_id]

    def active_users(self) -> int:
        """Users with runs holding or waiting for a slot."""
        return len(self._users)
