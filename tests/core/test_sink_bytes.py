"""The in-memory sink bounded in bytes: per user, over all users (least recently active users'
oldest events first), with cursor continuity and an ``EventGap`` for what a subscriber missed;
and the event size limit, applied as the engine builds each event."""

from __future__ import annotations

import asyncio
import gc
import sys
import tracemalloc
from datetime import UTC, datetime
from typing import Any

from agentengine import (
    AgentThinkingEvent,
    EventGap,
    ExecutionEngineFactory,
    InMemoryEventSink,
    RunContext,
    UserExecutionContext,
    agent,
    hookimpl,
    parse_event,
)
from agentengine.events import EVENT_OVERHEAD, wire_size
from hypothesis import HealthCheck, given, settings, strategies as st
from invariants import cursor_number

KB = 1024


def thinking(user: str, seq: int, text: str = "x") -> AgentThinkingEvent:
    return AgentThinkingEvent(
        run_id=f"run-{user}",
        user_id=user,
        thread_id="t",
        agent="a",
        seq=seq,
        ts=datetime.now(UTC),
        text=text,
        step=seq,
    )


def sized(user: str, seq: int, size: int) -> AgentThinkingEvent:
    """An event of about ``size`` bytes (``wire_size``)."""
    event = thinking(user, seq, "y" * max(size - EVENT_OVERHEAD - 88, 1))
    assert abs(wire_size(event) - size) < 200
    return event


def at(sink: InMemoryEventSink, n: int) -> str:
    """The cursor of position ``n`` in ``sink``'s logs."""
    return f"{sink.epoch}-{n}"


async def take(sink: InMemoryEventSink, user: str, after: str | None, count: int) -> list[Any]:
    items: list[Any] = []
    async with asyncio.timeout(5):
        async for item in sink.subscribe(user, after):
            items.append(item)
            if len(items) == count:
                break
    return items


def assert_continuous(items: list[Any], after: str | None = None) -> None:
    """Cursors without a gap: each event or EventGap continues where the last item ended."""
    position = after
    for item in items:
        if isinstance(item, EventGap):
            assert item.after == position
            assert cursor_number(item.cursor) - cursor_number(position) == item.missed
            position = item.cursor
        else:
            assert position is None or cursor_number(item.cursor) == cursor_number(position) + 1
            position = item.cursor


async def test_a_users_log_is_bounded_in_bytes_oldest_first() -> None:
    sink = InMemoryEventSink(retention=1000, retention_bytes=20 * KB, total_bytes=10_000 * KB)
    for seq in range(1, 31):
        sink.publish(sized("alice", seq, 2 * KB))
    kept = sink.retained("alice")
    assert 8 <= len(kept) <= 10  # 20 KB of 2 KB events
    assert [cursor_number(e.cursor) for e in kept] == list(range(31 - len(kept), 31))  # the newest
    assert sink.retained_bytes == sum(wire_size(e) for e in kept) <= 20 * KB
    items = await take(sink, "alice", None, 1 + len(kept))
    assert isinstance(items[0], EventGap) and items[0].missed == 30 - len(kept)
    assert_continuous(items)


async def test_an_event_larger_than_the_users_budget_is_kept_alone() -> None:
    sink = InMemoryEventSink(retention_bytes=4 * KB, total_bytes=10_000 * KB)
    sink.publish(sized("alice", 1, 1 * KB))
    sink.publish(sized("alice", 2, 10 * KB))  # never dropped silently: the newest stays
    assert [e.seq for e in sink.retained("alice")] == [2]


async def test_the_total_budget_drops_the_least_recently_active_users_events_first() -> None:
    sink = InMemoryEventSink(retention_bytes=100 * KB, total_bytes=30 * KB)
    for user in ("ann", "bob", "cat"):
        for seq in range(1, 6):
            sink.publish(sized(user, seq, 2 * KB))  # 3 x 10 KB: fits
    sink.publish(sized("ann", 6, 2 * KB))  # ann active again: bob is now the least recent
    assert sink.retained_bytes <= 30 * KB
    assert len(sink.retained("ann")) == 6 and len(sink.retained("cat")) == 5
    assert [e.seq for e in sink.retained("bob")] == [2, 3, 4, 5]  # bob's oldest went
    for seq in range(7, 12):
        sink.publish(sized("ann", seq, 2 * KB))
    assert sink.retained_bytes <= 30 * KB
    assert sink.retained("bob") == []  # all of bob first, then cat's oldest
    assert "bob" not in sink.users()
    assert len(sink.retained("cat")) < 5
    # bob comes back: numbering continues, an old cursor learns what it missed
    sink.publish(sized("bob", 6, 2 * KB))
    assert sink.retained("bob")[0].cursor == at(sink, 6)
    items = await take(sink, "bob", at(sink, 1), 2)
    assert isinstance(items[0], EventGap) and items[0].missed == 4
    assert items[1].cursor == at(sink, 6)
    assert_continuous(items, at(sink, 1))


async def test_a_subscriber_whose_next_events_were_dropped_is_told() -> None:
    sink = InMemoryEventSink(retention_bytes=100 * KB, total_bytes=20 * KB)
    for seq in range(1, 4):
        sink.publish(sized("bob", seq, 2 * KB))
    stream = sink.subscribe("bob", None)
    got = [await anext(stream) for _ in range(3)]  # caught up
    assert [e.cursor for e in got] == [at(sink, 1), at(sink, 2), at(sink, 3)]
    sink.publish(sized("bob", 4, 2 * KB))
    sink.publish(sized("bob", 5, 2 * KB))  # published while the subscriber is elsewhere
    for seq in range(1, 20):  # alice's activity pushes bob's events out before it reads them
        sink.publish(sized("alice", seq, 2 * KB))
    assert sink.retained("bob") == [] and "bob" in sink.users()  # kept for its subscriber
    sink.publish(sized("bob", 6, 2 * KB))
    gap = await anext(stream)
    assert isinstance(gap, EventGap) and (gap.after, gap.cursor, gap.missed) == (
        at(sink, 3),
        at(sink, 5),
        2,
    )
    nxt = await anext(stream)
    assert nxt.cursor == at(sink, 6) and nxt.seq == 6
    await stream.aclose()


async def test_dropped_events_are_released_and_forgotten_users_bounded() -> None:
    sink = InMemoryEventSink(max_users=50, retention_bytes=64 * KB, total_bytes=256 * KB)
    marker_text = "z" * (40 * KB)
    held = sys.getrefcount(marker_text)
    sink.publish(thinking("first", 1, marker_text))
    assert sys.getrefcount(marker_text) == held + 1
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for u in range(400):  # 400 users x 8 x 16 KB = 50 MB through a 256 KB budget
            for seq in range(1, 9):
                sink.publish(sized(f"user-{u}", seq, 16 * KB))
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert sink.retained_bytes <= 256 * KB
    assert grown < 256 * KB + 200 * KB  # the budget plus a fixed overhead, not 50 MB
    assert sys.getrefcount(marker_text) == held  # the sink keeps no reference to it
    assert len(sink.users()) <= 50
    assert len(sink._dropped) <= 50  # remembered numbering is bounded too


async def test_a_forgotten_user_resuming_an_old_cursor_gets_a_gap_not_a_silent_skip() -> None:
    sink = InMemoryEventSink(max_users=2, total_bytes=10_000 * KB)
    for seq in range(1, 6):
        sink.publish(thinking("old", seq))
    for u in range(10):  # old's log is dropped, then even its numbering forgotten
        sink.publish(thinking(f"u{u}", 1))
    assert "old" not in sink._dropped
    sink.publish(thinking("old", 6))
    items = await take(sink, "old", at(sink, 5), 2)
    # Its numbering was forgotten: it restarts above every forgotten cursor, and the gap says
    # so, never a silent skip; how many were missed is unknown (the numbers in between may be
    # other users'), so it says None rather than a made-up count.
    gap = items[0]
    assert isinstance(gap, EventGap) and gap.after == at(sink, 5) and gap.missed is None
    assert items[1].seq == 6
    assert_continuous(items[1:], gap.cursor)


_OPS = st.lists(
    st.tuples(
        st.sampled_from(["publish"] * 6 + ["subscribe", "unsubscribe"]),
        st.integers(0, 3),  # which user
        st.sampled_from([1, 300, 1500, 4000, 12000]),  # text size of a published event
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    _OPS,
    st.sampled_from([1, 3, 50]),
    st.sampled_from([2 * KB, 8 * KB, 1000 * KB]),
    st.sampled_from([3 * KB, 16 * KB, 1000 * KB]),
)
def test_the_byte_count_is_the_retained_events_whatever_the_order(
    ops: list[tuple[str, int, int]], retention: int, retention_bytes: int, total_bytes: int
) -> None:
    """Publishes from users taking turns, with subscribers coming and going: after each step
    the sink's count is the sum of what it retains, and both budgets hold (but for a newest
    event larger than a budget on its own)."""

    async def steps() -> None:
        sink = InMemoryEventSink(
            retention, max_users=3, retention_bytes=retention_bytes, total_bytes=total_bytes
        )
        streams: list[Any] = []
        for seq, (op, user_n, size) in enumerate(ops, 1):
            user = f"user-{user_n}"
            if op == "publish":
                sink.publish(thinking(user, seq, "y" * size))
            elif op == "subscribe":
                stream = sink.subscribe(user)
                streams.append((stream, asyncio.ensure_future(anext(stream))))
                await asyncio.sleep(0)
            elif streams:
                stream, pending = streams.pop(0)
                pending.cancel()
                await asyncio.sleep(0)
                await stream.aclose()
            retained = {u: sink.retained(u) for u in sink.users()}
            assert sink.retained_bytes == sum(wire_size(e) for es in retained.values() for e in es)
            for events in retained.values():
                assert sum(wire_size(e) for e in events) <= retention_bytes or len(events) == 1
            alone = sum(len(es) for es in retained.values()) == 1
            assert sink.retained_bytes <= total_bytes or alone
        for _, pending in streams:
            pending.cancel()
        await asyncio.sleep(0)

    asyncio.run(steps())


# -- the event size limit, in the engine --------------------------------------------------------


@agent(name="big_output")
async def big_output(run: RunContext, size: int) -> Any:
    await run.think("t" * size)
    return {"text": "o" * size, "small": 1}


class BigPlugin:
    name = "big-output"

    @hookimpl
    def agentengine_register_agents(self, registry: Any) -> None:
        registry.add(big_output)


async def test_large_values_are_cut_to_the_event_size_limit_with_their_size() -> None:
    factory = ExecutionEngineFactory(
        plugins=[BigPlugin()],
        load_entrypoints=False,
        environ={"AGENTENGINE_ENGINE__EVENT_MAX_BYTES": str(16 * KB)},
    )
    assert factory.engine_settings.event_max_bytes == 16 * KB
    async with factory:
        async with factory.user_execution_engine(UserExecutionContext.for_user("alice")) as eng:
            result = await eng.execute_agent("big_output", {"size": 1_000_000})
    assert result.output["text"] == "o" * 1_000_000  # in process: the agent's own value
    thinking_event, done = result.events[1], result.events[-1]
    assert thinking_event.text.endswith("…[truncated: 1000000 characters]")
    assert 8 * KB < len(thinking_event.text) <= 16 * KB
    assert done.output["text"].endswith("…[truncated: 1000000 characters]")
    assert done.output["small"] == 1  # only the large field was cut
    for event in result.events:
        assert wire_size(event) <= 16 * KB + 1 * KB
        assert parse_event(event.model_dump_json()).to_wire() == event.to_wire()


async def test_the_factory_gives_the_sink_its_byte_budgets() -> None:
    factory = ExecutionEngineFactory(
        load_entrypoints=False,
        environ={
            "AGENTENGINE_ENGINE__EVENT_RETENTION_BYTES": "1048576",
            "AGENTENGINE_ENGINE__EVENT_TOTAL_BYTES": "33554432",
        },
    )
    sink = factory.events
    assert isinstance(sink, InMemoryEventSink)
    assert (sink.retention_bytes, sink.total_bytes) == (1_048_576, 33_554_432)
    await factory.shutdown()
