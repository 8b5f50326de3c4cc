"""The in-memory sink's own cursors (positions in a user's log), dropped logs, and the wire form.

What every sink guarantees (resume, gaps, refused cursors, any interleaving) is tested once for
all sinks in ``tests/sinks/test_sink_conformance.py``."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest
from agentengine import (
    AgentStartedEvent,
    EventGap,
    InMemoryEventSink,
    ToolCompletedEvent,
    ToolStatus,
    parse_event,
)
from invariants import cursor_at, cursor_number, thinking


def at(sink: InMemoryEventSink, n: int) -> str:
    """The cursor of position ``n`` in ``sink``'s logs."""
    return f"{sink.epoch}-{n}"


async def take(sink: InMemoryEventSink, user: str, after: str | None, n: int) -> list:
    items = []
    async for item in sink.subscribe(user, after=after):
        items.append(item)
        if len(items) == n:
            break
    return items


def test_wire_form_round_trips_through_json() -> None:
    started = AgentStartedEvent(
        run_id="r",
        user_id="u",
        thread_id="t",
        agent="a",
        seq=1,
        ts=datetime.now(UTC),
        input={"q": "x"},
    )
    wire = json.dumps(started.to_wire())
    back = parse_event(wire)
    assert isinstance(back, AgentStartedEvent) and back == started
    done = ToolCompletedEvent.model_construct(
        run_id="r",
        user_id="u",
        thread_id="t",
        agent="a",
        seq=2,
        ts=datetime.now(UTC),
        tool="x",
        tool_call_id="r.1",
        status=ToolStatus.OK,
        result=object(),
        error=None,
        duration_ms=1.0,
    )
    data = done.to_wire()  # a result JSON cannot hold is rendered, never an exception
    assert data["result"].startswith("<object object")
    with pytest.raises(ValueError, match="agent_started"):
        parse_event({"type": "agent_exploded", "run_id": "r"})


async def test_logs_beyond_max_users_are_dropped_idle_first_with_cursors_continuing() -> None:
    sink = InMemoryEventSink(retention=10, max_users=2)
    for seq in range(1, 4):
        sink.publish(thinking("alice", seq))
    watching = sink.subscribe("bob")  # bob has a live subscriber: never dropped
    first_bob = asyncio.ensure_future(anext(watching))
    await asyncio.sleep(0)
    sink.publish(thinking("bob", 1))
    assert (await asyncio.wait_for(first_bob, 2)).text == "bob-1"
    sink.publish(thinking("carol", 1))  # a third user: alice (idle) is dropped, not bob
    assert sorted(sink.users()) == ["bob", "carol"]
    sink.publish(thinking("alice", 4))  # alice's numbering goes on where it stopped
    assert sink.latest_cursor("alice") == at(sink, 4)
    resumed = await take(sink, "alice", at(sink, 1), 2)
    assert isinstance(resumed[0], EventGap) and resumed[0].missed == 2
    assert resumed[1].cursor == at(sink, 4)
    await watching.aclose()


async def test_memory_cursors_are_positions_in_the_users_log() -> None:
    sink = InMemoryEventSink()
    for seq in range(1, 4):
        sink.publish(thinking("alice", seq))
    cursors = [e.cursor for e in sink.retained("alice")]
    assert [cursor_number(c) for c in cursors] == [1, 2, 3]
    assert sink.latest_cursor("alice") == cursors[-1] and sink.latest_cursor("carol") is None
    with pytest.raises(ValueError, match=r"ahead of user 'alice'"):
        await take(sink, "alice", cursor_at(cursors[-1], 4), 1)
