"""Checks of the event protocol's invariants, shared by the core tests."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable

from agentengine import BaseEvent


def check_run(events: list[BaseEvent]) -> None:
    """Assert every invariant of one run's events (in delivery order)."""
    assert events, "a run produced no events"
    run_ids = {e.run_id for e in events}
    assert len(run_ids) == 1, f"events of several runs mixed: {run_ids}"
    types = [e.type for e in events]
    assert types[0] == "agent_started", types
    assert types[-1] == "agent_completed", types
    assert types.count("agent_started") == 1, types
    assert types.count("agent_completed") == 1, types
    assert [e.seq for e in events] == list(range(1, len(events) + 1)), [e.seq for e in events]
    if "agent_error" in types:
        assert types.count("agent_error") == 1, types
        assert types.index("agent_error") == len(types) - 2, types
    opened = Counter(e.tool_call_id for e in events if e.type == "tool_executing")  # type: ignore[attr-defined]
    closed = Counter(e.tool_call_id for e in events if e.type == "tool_completed")  # type: ignore[attr-defined]
    assert opened == closed, f"unmatched tool calls: executing={opened} completed={closed}"
    assert all(v == 1 for v in opened.values()), opened
    for e in events:
        if e.type == "tool_completed":
            start = next(
                x
                for x in events
                if x.type == "tool_executing" and x.tool_call_id == e.tool_call_id  # type: ignore[attr-defined]
            )
            assert start.seq < e.seq


def check_stream(user_id: str, events: Iterable[BaseEvent]) -> dict[str, list[BaseEvent]]:
    """Assert a user's delivered stream holds only that user's events, each run intact."""
    by_run: dict[str, list[BaseEvent]] = defaultdict(list)
    cursors = []
    for e in events:
        assert e.user_id == user_id, f"event of {e.user_id} reached {user_id}"
        by_run[e.run_id].append(e)
        cursors.append(int(e.cursor or 0))
    assert cursors == sorted(cursors) and len(set(cursors)) == len(cursors), "cursor order broken"
    for run_events in by_run.values():
        check_run(run_events)
    return by_run
