"""Event delivery: cursors, resume without loss or duplicates, gap signals, wire form."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest
from agentengine import (
    AgentStartedEvent,
    AgentThinkingEvent,
    BaseEvent,
    EventGap,
    ExecutionEngineFactory,
    InMemoryEventSink,
    ToolCompletedEvent,
    ToolStatus,
    UserExecutionContext,
    parse_event,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from invariants import cursor_number
from outcome_agents import OutcomesPlugin


def thinking(user: str, seq: int) -> AgentThinkingEvent:
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


async def test_resume_after_cursor_loses_and_repeats_nothing() -> None:
    async with ExecutionEngineFactory(plugins=[OutcomesPlugin()], load_entrypoints=False) as f:
        seen: list[BaseEvent] = []
        async with f.user_execution_engine(UserExecutionContext.for_user("alice")) as engine:
            first = await engine.execute_agent("calc", {"text": "1"})
            # A subscriber reads a few events, "disconnects", and resumes from its cursor while
            # more runs happen.
            seen += await take(f.events, "alice", None, 3)  # type: ignore[arg-type]
            second = await engine.execute_agent("calc", {"text": "2"})
            resumed = asyncio.create_task(
                take(
                    f.events,
                    "alice",
                    seen[-1].cursor,  # type: ignore[arg-type]
                    len(first.events) + 2 * len(second.events) - 3,
                )
            )
            third = await engine.execute_agent("calc", {"text": "3"})
            seen += await asyncio.wait_for(resumed, 5)
    expected = [*first.events, *second.events, *third.events]
    assert [(e.run_id, e.seq) for e in seen] == [(e.run_id, e.seq) for e in expected]
    assert [cursor_number(e.cursor) for e in seen] == list(range(1, len(expected) + 1))


async def test_live_subscriber_follows_and_other_users_are_invisible() -> None:
    sink = InMemoryEventSink()
    task = asyncio.create_task(take(sink, "alice", None, 3))
    await asyncio.sleep(0)
    for seq in range(1, 4):
        sink.publish(thinking("bob", seq))
        sink.publish(thinking("alice", seq))
    items = await asyncio.wait_for(task, 2)
    assert [e.text for e in items] == ["alice-1", "alice-2", "alice-3"]
    assert sink.latest_cursor("bob") == at(sink, 3) and sink.latest_cursor("carol") is None


async def test_retention_overflow_is_signalled_not_skipped() -> None:
    sink = InMemoryEventSink(retention=3)
    for seq in range(1, 7):
        sink.publish(thinking("alice", seq))
    items = await take(sink, "alice", at(sink, 1), 4)
    gap = items[0]
    assert isinstance(gap, EventGap)
    assert gap.after == at(sink, 1) and gap.cursor == at(sink, 3) and gap.missed == 2
    assert [e.cursor for e in items[1:]] == [at(sink, 4), at(sink, 5), at(sink, 6)]
    assert gap.to_wire()["type"] == "events_lost"
    up_to_date = await take(sink, "alice", None, 1)
    assert isinstance(up_to_date[0], EventGap) and up_to_date[0].missed == 3


async def test_slow_subscriber_gets_gap_when_it_falls_behind_live() -> None:
    sink = InMemoryEventSink(retention=2)
    sink.publish(thinking("alice", 1))
    stream = sink.subscribe("alice")
    first = await anext(stream)
    assert first.cursor == at(sink, 1)
    for seq in range(2, 7):  # the subscriber is "slow": five more arrive meanwhile
        sink.publish(thinking("alice", seq))
    following = [await anext(stream) for _ in range(3)]
    assert isinstance(following[0], EventGap) and following[0].missed == 3
    assert [e.cursor for e in following[1:]] == [at(sink, 5), at(sink, 6)]
    await stream.aclose()


def test_bad_cursor_is_a_clear_error() -> None:
    sink = InMemoryEventSink()
    with pytest.raises(ValueError, match="invalid cursor 'abc'"):
        asyncio.run(take(sink, "alice", "abc", 1))


@settings(max_examples=40, deadline=None)
@given(
    publishes=st.lists(st.sampled_from(["alice", "bob", "carol"]), min_size=1, max_size=60),
    resume_at=st.integers(min_value=0, max_value=60),
    retention=st.integers(min_value=1, max_value=80),
)
def test_any_interleaving_delivers_exactly_the_users_events(
    publishes: list[str], resume_at: int, retention: int
) -> None:
    async def scenario() -> None:
        sink = InMemoryEventSink(retention=retention)
        counters: dict[str, int] = {}
        for user in publishes:
            counters[user] = counters.get(user, 0) + 1
            sink.publish(thinking(user, counters[user]))
        for user, total in counters.items():
            after = min(resume_at, total)
            wanted = total - after
            if wanted == 0:
                continue
            dropped = max(0, total - retention)
            got = await take(
                sink,
                user,
                at(sink, after) if after else None,
                wanted if after >= dropped else (total - dropped) + 1,
            )
            events = [g for g in got if isinstance(g, BaseEvent)]
            gaps = [g for g in got if isinstance(g, EventGap)]
            assert all(e.user_id == user for e in events)
            missed = sum(g.missed for g in gaps)
            assert missed + len(events) == wanted  # every wanted event delivered or signalled
            assert len({e.cursor for e in events}) == len(events)

    asyncio.run(scenario())


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


async def test_cursor_ahead_of_the_log_is_refused_not_waited_on() -> None:
    sink = InMemoryEventSink()
    for seq in range(1, 4):
        sink.publish(thinking("alice", seq))
    ahead = at(sink, 500)
    with pytest.raises(
        ValueError,
        match=rf"cursor '{ahead}' is ahead of user 'alice'.*newest event \(cursor {at(sink, 3)}\)",
    ):
        await take(sink, "alice", ahead, 1)
    with pytest.raises(ValueError, match=rf"newest event \(cursor {at(sink, 0)}\)"):
        await take(sink, "bob", at(sink, 1), 1)
    # The newest cursor itself is a valid resume point: the next event follows.
    follower = asyncio.create_task(take(sink, "alice", at(sink, 3), 1))
    await asyncio.sleep(0)
    sink.publish(thinking("alice", 4))
    assert [e.cursor for e in await asyncio.wait_for(follower, 2)] == [at(sink, 4)]


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
