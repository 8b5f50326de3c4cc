"""Pure logic of the streaming layer: frame encoding, the sink's end of a subscription."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from agentengine import AgentThinkingEvent, EventGap
from agentengine_server.streaming import FrameEncoder


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
