"""The ``EventSink`` protocol: where a run's events go, and how a user's subscribers read them.

A sink is chosen by the ``agentengine_event_sink`` hook (the in-memory sink when no plugin
provides one). It keeps each user's events in order with an opaque cursor per event; a
subscriber reads from a cursor onwards and then waits for more. An ``EventGap`` stands in for
events a subscriber asked for that are no longer retained: a loss is reported, never silent.

Cursors are opaque strings that name the log they belong to (the in-memory sink's carry a
random epoch of the sink instance), so a cursor of another log (an earlier process, a sink
that was replaced) is recognised and answered with an ``EventGap`` instead of being misread.
Two values are not cursors of any log: ``"0"`` (like ``None``: everything retained) and
``LIVE`` (only events published from now on).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any, Final, Literal, Protocol, cast, runtime_checkable

from pydantic import BaseModel, ConfigDict

from agentengine.events import (
    AgentCompletedEvent,
    AgentErrorEvent,
    AgentStartedEvent,
    AgentThinkingEvent,
    BaseEvent,
    ToolCompletedEvent,
    ToolExecutingEvent,
)

__all__ = ["LIVE", "EventGap", "EventSink", "StreamItem", "check_event_sink"]

#: ``subscribe(user_id, after=LIVE)``: only the events published after the call, none of those
#: already retained (what a new server stream without a resume cursor does). A string, so it
#: passes wherever a cursor does; it is never the cursor of an event.
LIVE: Final = "live"


class EventGap(BaseModel):
    """Sent to a subscriber in place of events it asked for that are not there to deliver.

    The events after ``after`` (exclusive) up to ``cursor`` (inclusive) are gone; the stream
    continues after ``cursor``, with the oldest event still retained. ``missed`` is how many
    they were: a number when ``after`` is a cursor of the same log (retention dropped them),
    ``None`` when it is unknown: ``after`` belongs to another log (a cursor from an earlier
    process, or from before the sink was replaced, or from before cursors named their log),
    whose history is gone. Resume from ``cursor`` to skip them knowingly.
    """

    model_config = ConfigDict(frozen=True)

    type: Literal["events_lost"] = "events_lost"
    user_id: str
    after: str | None
    cursor: str
    missed: int | None

    def to_wire(self) -> dict[str, Any]:
        """The JSON wire form."""
        return self.model_dump(mode="json")


StreamItem = (
    AgentStartedEvent
    | AgentThinkingEvent
    | ToolExecutingEvent
    | ToolCompletedEvent
    | AgentErrorEvent
    | AgentCompletedEvent
    | EventGap
)
"""One item of a user's stream: an event of one of the six types, or an ``EventGap``. Narrow it
with ``isinstance`` or by ``item.type``."""


@runtime_checkable
class EventSink(Protocol):
    """Where events go. ``publish`` must not block: a sink that needs I/O buffers and sends in
    the background, and reports (logs, counts) anything it cannot deliver."""

    def publish(self, event: BaseEvent) -> None:
        """Accept one event; set ``event.cursor``."""

    def subscribe(self, user_id: str, after: str | None = None) -> AsyncGenerator[StreamItem, None]:
        """The user's events after ``after``, then live ones, until the sink closes.

        ``after``: ``None`` or ``"0"`` for everything retained; ``LIVE`` for only the events
        published after this call; else the ``cursor`` of an event (or of an ``EventGap``) this
        sink delivered. A cursor of another log (another epoch) yields an ``EventGap`` with
        ``missed=None`` first, then what is retained. Refused with ``ValueError``, when called
        or at the first iteration: a string that is no cursor, or a cursor of this log ahead of
        its newest event. An async generator: close it (``contextlib.aclosing``) to end the
        subscription at once.
        """

    def latest_cursor(self, user_id: str) -> str | None:
        """The cursor of the user's newest event as far as this sink knows without waiting
        (``None`` when it holds none): ``subscribe(user_id, after=it)`` then yields only newer
        events. Must not block."""

    async def aclose(self) -> None:
        """Release resources; end live subscriptions."""


#: What every sink implements (``EventSink``'s members).
_SINK_METHODS = ("publish", "subscribe", "latest_cursor", "aclose")


def check_event_sink(sink: object, source: str) -> EventSink:
    """``sink`` if it implements ``EventSink``; else a ``TypeError`` naming ``source`` (where
    the sink came from) and the methods it lacks."""
    missing = [name for name in _SINK_METHODS if not callable(getattr(sink, name, None))]
    if missing:
        raise TypeError(
            f"{source} gave {type(sink).__qualname__}, which is not an EventSink: it lacks "
            f"{', '.join(missing)} (see agentengine.EventSink for the methods and what each "
            "does)"
        )
    return cast(EventSink, sink)
