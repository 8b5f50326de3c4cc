"""The deadline scheduler behaves like asyncio.timeout, on one timer."""

from __future__ import annotations

import asyncio

import pytest
from agentengine import ExecutionEngineFactory, RunStatus, UserExecutionContext
from agentengine.runtime.deadlines import DeadlineScheduler
from outcome_agents import OutcomesPlugin


async def test_expiry_raises_timeout_and_marks_expired() -> None:
    scheduler = DeadlineScheduler()
    with pytest.raises(TimeoutError):
        async with scheduler.deadline(0.02) as d:
            await asyncio.sleep(5)
    assert d.expired()


async def test_no_expiry_when_block_finishes_in_time() -> None:
    scheduler = DeadlineScheduler()
    async with scheduler.deadline(5) as d:
        await asyncio.sleep(0.001)
    assert not d.expired()
    assert scheduler.pending() == 0


async def test_outer_cancellation_is_not_turned_into_timeout() -> None:
    scheduler = DeadlineScheduler()

    async def body() -> None:
        async with scheduler.deadline(5):
            await asyncio.sleep(5)

    task = asyncio.create_task(body())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_nested_deadlines_fire_in_order_and_inner_one_wins() -> None:
    scheduler = DeadlineScheduler()
    async with scheduler.deadline(5) as outer:
        with pytest.raises(TimeoutError):
            async with scheduler.deadline(0.02) as inner:
                await asyncio.sleep(5)
        await asyncio.sleep(0.01)
    assert inner.expired() and not outer.expired()


async def test_many_concurrent_deadlines_each_fire_for_their_own_task() -> None:
    scheduler = DeadlineScheduler()

    async def one(delay: float, sleep: float) -> bool:
        try:
            async with scheduler.deadline(delay):
                await asyncio.sleep(sleep)
        except TimeoutError:
            return True
        return False

    # Odd cases outlive short deadlines; even ones finish well within long ones.
    cases = [(0.01 * (i % 5 + 1), 0.3) if i % 2 else (0.5, 0.001) for i in range(200)]
    results = await asyncio.gather(*(one(d, s) for d, s in cases))
    assert results == [i % 2 == 1 for i in range(200)]


async def test_finished_entries_are_compacted() -> None:
    scheduler = DeadlineScheduler()
    for _ in range(5000):
        async with scheduler.deadline(60):
            await asyncio.sleep(0)  # suspends: the deadline goes into the heap
    assert 0 < len(scheduler._heap) < 3000
    assert scheduler._finished == sum(1 for _, _, d in scheduler._heap if d._done)
    assert scheduler.pending() == 0


async def test_a_block_that_never_suspends_never_reaches_the_heap() -> None:
    scheduler = DeadlineScheduler()
    for _ in range(100):
        with scheduler.deadline(300) as d, scheduler.deadline(60):
            pass
    assert scheduler.pending() == 0
    assert scheduler._entered == []  # nothing accumulates while the step goes on
    await asyncio.sleep(0)  # the end of the step, where open deadlines are registered
    assert scheduler._heap == [] and not d.expired()


async def test_a_block_busy_past_its_deadline_times_out_at_its_next_suspension() -> None:
    scheduler = DeadlineScheduler()
    loop = asyncio.get_running_loop()
    d = scheduler.deadline(0.01)

    async def busy_then_wait() -> None:
        with d:
            busy_until = loop.time() + 0.03
            while loop.time() < busy_until:  # no suspension: nothing can interrupt this
                pass
            await asyncio.sleep(5)

    with pytest.raises(TimeoutError):
        await busy_then_wait()
    assert d.expired()


async def test_expired_entries_leave_the_count_of_finished_ones_exact() -> None:
    scheduler = DeadlineScheduler()

    async def expires() -> None:
        with pytest.raises(TimeoutError):
            with scheduler.deadline(0.01):
                await asyncio.sleep(5)

    async def finishes() -> None:
        with scheduler.deadline(0.01):
            await asyncio.sleep(0)

    await asyncio.gather(*(expires() for _ in range(20)), *(finishes() for _ in range(20)))
    await asyncio.sleep(0.03)
    assert scheduler._finished == sum(1 for _, _, d in scheduler._heap if d._done)
    assert scheduler.pending() == 0


async def test_inline_run_cancelled_by_engine_cleanup_returns_a_result() -> None:
    factory = ExecutionEngineFactory(plugins=[OutcomesPlugin()], load_entrypoints=False)
    async with factory:
        engine = await factory.create_for_user(UserExecutionContext.for_user("alice"))
        caller = asyncio.create_task(engine.execute_agent("sleeper", {"seconds": 30}))
        await asyncio.sleep(0.02)
        await engine.cleanup()
        result = await asyncio.wait_for(caller, 5)  # the caller is not cancelled itself
    assert result.status is RunStatus.CANCELLED
    assert result.events[-1].type == "agent_completed"
