"""The one way agentengine makes ids: ``new_id("run")`` is ``run-`` and 24 random hex digits.

96 bits from ``os.urandom``: unique and unguessable like a uuid4 (122 bits), shorter, and made
256 at a time, one system call per 256 ids instead of one per id (a run id is made for every
run, so this is on the run path). Used for run, thread, request, engine and anonymous user ids,
in the core and in the server.
"""

from __future__ import annotations

import os
from collections import deque

__all__ = ["RandomHex", "new_id", "random_hex"]


class RandomHex:
    """24 random hex digits per call, drawn 256 at a time. Safe across threads
    (``deque.popleft`` is atomic) and forks (a child discards what its parent drew)."""

    DIGITS = 24
    BATCH = 256

    def __init__(self) -> None:
        self._ids: deque[str] = deque()
        os.register_at_fork(after_in_child=self._ids.clear)

    def next(self) -> str:
        """The next id."""
        while True:
            try:
                return self._ids.popleft()
            except IndexError:
                size = self.DIGITS // 2
                # bytes.hex with a separator every `size` bytes, split: the ids cut in C
                # (half the cost of slicing them out one by one).
                self._ids.extend(os.urandom(size * self.BATCH).hex(" ", size).split(" "))


#: The process's generator, as a bound method (cheaper to call than through the instance).
random_hex = RandomHex().next


def new_id(prefix: str) -> str:
    """``prefix-`` and 24 random hex digits."""
    return f"{prefix}-{random_hex()}"
