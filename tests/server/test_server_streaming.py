"""Pure logic of the streaming layer: frame encoding, the sink's end of a subscription."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

from agentengine import AgentThinkingEvent, EventGap
from agentengine_server.streaming import EventPump, FrameEncoder, StreamHub


def test_frame_encoder_encodes_each_event_once() -> None:
    encoder = FrameEncoder(size=2)
    event = AgentThinkingEvent(
        run_id="r-1", user_id="alice", thread_id="t-1", agent="a", seq=1,
        ts=datetime.now(UTC), text="hi", step=1, cursor="7",
    )  # fmt: skip
    first = encoder.encode(event)
    assert encoder.encode(event) is first
    assert first.cursor == "7"
    assert '"cursor":"7"' in first.text
    gap = encoder.encode(EventGap(user_id="alice", after="1", cursor="5", missed=4))
    assert gap.gap
    assert gap.cursor == "5"
    assert '"events_lost"' in gap.text


async def test_sink_close_ends_subscriptions_after_what_was_published() -> None:
    """The shutdown drain relies on this: a subscriber that has not caught up yet still gets
    the events published before the sink closed (the terminal events of drained runs)."""
    from agentengine import InMemoryEventSink

    sink = InMemoryEventSink()

    def event(seq: int) -> AgentThinkingEvent:
        return AgentThinkingEvent(
            run_id="r-1", user_id="alice", thread_id="t-1", agent="a", seq=seq,
            ts=datetime.now(UTC), text=str(seq), step=seq,
        )  # fmt: skip

    got: list[int] = []

    async def read() -> None:
        async for item in sink.subscribe("alice"):
            assert isinstance(item, AgentThinkingEvent)
            got.append(item.seq)

    reader = asyncio.create_task(read())
    await asyncio.sleep(0)
    sink.publish(event(1))
    sink.publish(event(2))
    await sink.aclose()  # in the same step as the publishes: the reader has not run yet
    async with asyncio.timeout(5):
        await reader
    assert got == [1, 2]


def _event(user: str, seq: int) -> AgentThinkingEvent:
    return AgentThinkingEvent(
        run_id="r-1", user_id=user, thread_id="t-1", agent="a", seq=seq,
        ts=datetime.now(UTC), text=f"{user}-{seq}", step=seq,
    )  # fmt: skip


async def _texts(pump: EventPump, count: int) -> list[str]:
    texts = []
    async with asyncio.timeout(5):
        for _ in range(count):
            frame = await pump.next()
            assert frame is not None
            texts.append(json.loads(frame.text)["text"])
    return texts


async def test_live_pumps_skip_what_is_retained_and_share_the_fanout_at_the_live_edge() -> None:
    from agentengine import LIVE, InMemoryEventSink

    sink = InMemoryEventSink()
    for seq in range(1, 4):
        sink.publish(_event("alice", seq))
    hub = StreamHub(sink, FrameEncoder(), capacity=64, stall_timeout=5)
    first = hub.open("alice", LIVE)
    second = hub.open("alice", LIVE)  # the fan-out started live too: joined
    assert first.shared and second.shared
    sink.publish(_event("alice", 4))  # published before any task ran: still delivered
    assert await _texts(first, 1) == await _texts(second, 1) == ["alice-4"]
    # The fan-out has delivered the newest event: a live start joins it.
    third = hub.open("alice", LIVE)
    assert third.shared
    # A pump resuming from the start reads on its own, then catches up and joins.
    replay = hub.open("alice", "0")
    assert not replay.shared
    sink.publish(_event("alice", 5))
    assert await _texts(third, 1) == ["alice-5"]
    assert await _texts(replay, 5) == [f"alice-{seq}" for seq in range(1, 6)]
    assert replay.shared
    for pump in (first, second, third, replay):
        await pump.stop()
    await sink.aclose()
