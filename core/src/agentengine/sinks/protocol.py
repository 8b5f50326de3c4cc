"""The ``EventSink`` protocol: where a run's events go, and how a user's subscribers read them.

A sink is chosen by the ``agentengine_event_sink`` hook (the in-memory sink when no plugin
provides one). It keeps each user's events in order with an opaque cursor per event; a
subscriber reads from a cursor onwards and then waits for more. An ``EventGap`` stands in for
events a subscriber asked for that are no longer retained: a loss is reported, never silent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from agentengine.events import BaseEvent

__all__ = ["EventGap", "EventSink", "StreamItem"]


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
