"""Invariant checks for the core tests: the plugin kit's assertions (one implementation),
plus the cursor order a subscription must keep."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime

from agentengine import AgentThinkingEvent, BaseEvent
from agentengine.testing import assert_isolated, assert_run_invariants


def cursor_number(cursor: str | None) -> int:
    """The position a cursor of the in-memory sink (``<epoch>-<n>``) names in its log: ``n``.
    Cursors are opaque to clients; tests of the sink itself look inside."""
    return int((cursor or "0").rsplit("-", 1)[-1])


def cursor_at(like: str, n: int) -> str:
    """The cursor of position ``n`` in the same log as the cursor ``like``."""
    return f"{like.rsplit('-', 1)[0]}-{n}"


def check_run(events: list[BaseEvent]) -> None:
    """Assert every invariant of one run's events (in delivery order)."""
    assert events, "a run produced no events"
    assert len({e.run_id for e in events}) == 1, "events of several runs mixed"
    assert_run_invariants(events)


def check_stream(user_id: str, events: Iterable[BaseEvent]) -> dict[str, list[BaseEvent]]:
    """Assert a user's delivered stream holds only that user's events, each run whole, in
    strictly increasing cursor order; return the events by run."""
    delivered = list(events)
    assert_isolated({user_id: delivered})
    cursors = [cursor_number(e.cursor) for e in delivered]
    assert cursors == sorted(set(cursors)), "cursor order broken or repeated"
    by_run: dict[str, list[BaseEvent]] = defaultdict(list)
    for event in delivered:
        by_run[event.run_id].append(event)
    return by_run


def thinking(user: str, seq: int) -> AgentThinkingEvent:
    """An ``agent_thinking`` event of ``user`` with text ``"<user>-<seq>"``, for sink tests."""
    return AgentThinkingEvent(
        run_id="r",
        user_id=user,
        thread_id="t",
        agent="a",
        seq=seq,
        ts=datetime.now(UTC),
        text=f"{user}-{seq}",
        step=seq,
    )
