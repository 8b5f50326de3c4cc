"""Pure logic of the streaming layer: finishing a hand-started coroutine, frame encoding."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from agentengine import AgentThinkingEvent, EventGap
from agentengine_server.app import finish_coroutine
from agentengine_server.streaming import FrameEncoder


async def test_finish_coroutine_resumes_like_a_task() -> None:
    log: list[str] = []
    fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def work() -> None:
        log.append("start")
        log.append(await fut)
        await asyncio.sleep(0)
        log.append("end")

    coro = work()
    waiting = coro.send(None)  # runs until it waits on fut
    assert waiting is fut
    assert log == ["start"]
    driver = asyncio.create_task(finish_coroutine(coro, waiting))
    await asyncio.sleep(0)
    fut.set_result("value")
    await driver
    assert log == ["start", "value", "end"]


async def test_finish_coroutine_propagates_errors_and_closes_on_cancel() -> None:
    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    closed: list[bool] = []

    async def failing() -> None:
        await fut
        raise OSError("client gone")

    coro = failing()
    driver = asyncio.create_task(finish_coroutine(coro, coro.send(None)))
    fut.set_result(None)
    with pytest.raises(OSError, match="client gone"):
        await driver

    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def waiting_forever() -> None:
        try:
            await never
        finally:
            closed.append(True)

    coro2 = waiting_forever()
    driver = asyncio.create_task(finish_coroutine(coro2, coro2.send(None)))
    await asyncio.sleep(0)
    driver.cancel()
    with pytest.raises(asyncio.CancelledError):
        await driver
    assert closed == [True]


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
