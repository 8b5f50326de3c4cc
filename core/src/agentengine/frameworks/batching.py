"""Streamed model text batched into ``agent_thinking`` events.

A model streams its text a few characters at a time; one event per piece would flood every
subscriber. ``ThinkingBatcher`` gathers the pieces of one part (text, or reasoning) and emits
them as one ``agent_thinking`` at most every ``window`` seconds, and when the part ends
(``flush``): the adapter flushes before a tool call and at the end of the run, so the events
stay in the order the model produced them. A change between text and reasoning flushes too
(``reasoning=True`` marks the model's reasoning). ``window`` 0: one event per piece.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from agentengine.errors import RegistrationError

if TYPE_CHECKING:
    from agentengine.definitions.run import RunContext

__all__ = ["DEFAULT_THINKING_WINDOW", "ThinkingBatcher", "check_window"]

#: Default batching window of streamed text, in seconds.
DEFAULT_THINKING_WINDOW = 0.25


def check_window(agent: str, window: float) -> float:
    """``window`` if it is a valid batching window, else ``RegistrationError`` naming it."""
    if not isinstance(window, int | float) or isinstance(window, bool) or not window >= 0:
        raise RegistrationError(f"agent {agent!r}: thinking_window must be >= 0, got {window}")
    return float(window)


class ThinkingBatcher:
    """Streamed text of one run batched into ``agent_thinking`` events (see the module docs)."""

    __slots__ = ("_first", "_parts", "_reasoning", "_run", "_window")

    def __init__(self, run: RunContext, window: float) -> None:
        self._run = run
        self._window = window
        self._parts: list[str] = []
        self._reasoning = False
        self._first = 0.0

    async def add(self, text: str | None, reasoning: bool) -> None:
        """Add one streamed piece (empty pieces are ignored)."""
        if not text:
            return
        if self._parts and reasoning != self._reasoning:
            await self.flush()
        if not self._parts:
            self._first = time.monotonic()
            self._reasoning = reasoning
        self._parts.append(text)
        if time.monotonic() - self._first >= self._window:
            await self.flush()

    async def flush(self) -> None:
        """Emit what is gathered, if anything, as one event."""
        if self._parts:
            text = "".join(self._parts)
            self._parts.clear()
            await self._run.think(text, reasoning=self._reasoning)
