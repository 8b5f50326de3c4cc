"""A run's own buffer of events (``RunContext.events``, ``RunResult.events``, what its handle
iterates) is bounded in bytes by ``[engine] run_event_retention_bytes``: a run streaming
megabytes of thinking keeps its first event and its newest ones, not everything, while its
``seq`` numbering, its event count and its sink stream stay complete. A handle being iterated
still gets every event."""

from __future__ import annotations

import asyncio

from agentengine import (
    ExecutionEngineFactory,
    RunContext,
    UserExecutionContext,
    agent,
    hookimpl,
    wire_size,
)
from agentengine.config import EngineSettings, Settings

KB = 1024
MiB = 1024 * KB
BUDGET = 256 * KB
SEEN: list[int] = []


@agent(name="streamer")
async def streamer(run: RunContext, count: int, size: int) -> int:
    for i in range(count):
        await run.think(f"{i:06d}" + "x" * size)
        if i % 10 == 0:
            # What the run itself holds, as it goes.
            SEEN.append(sum(wire_size(e) for e in run.events))
            await asyncio.sleep(0)
    return count


class StreamerPlugin:
    @hookimpl
    def agentengine_register_agents(self, registry):  # type: ignore[no-untyped-def]
        registry.add(streamer)


def make_factory() -> ExecutionEngineFactory:
    config = Settings({"engine": {"run_event_retention_bytes": BUDGET}})
    return ExecutionEngineFactory(
        plugins=[StreamerPlugin()], load_entrypoints=False, environ={}, config=config,
        idle_ttl=None,
    )  # fmt: skip


def test_the_setting_has_a_documented_default() -> None:
    assert EngineSettings().run_event_retention_bytes == 8 * MiB


async def test_a_run_holds_at_most_its_byte_budget_of_its_events() -> None:
    SEEN.clear()
    count, size = 400, 16 * KB  # 6.4 MB of thinking, 25 times the budget
    async with make_factory() as factory:
        async with factory.user_execution_engine(UserExecutionContext.for_user("alice")) as e:
            result = await e.execute_agent("streamer", {"count": count, "size": size})
    assert result.succeeded and result.output == count
    largest_event = 16 * KB + 1024
    assert max(SEEN) <= BUDGET + largest_event, max(SEEN)
    events = result.events
    assert sum(wire_size(e) for e in events) <= BUDGET + largest_event
    # The first event and the newest ones, in order; the terminal one last with the full count.
    assert events[0].type == "agent_started" and events[0].seq == 1
    assert events[-1].type == "agent_completed" and events[-1].seq == count + 2
    seqs = [e.seq for e in events]
    assert seqs == sorted(seqs) and seqs[1:] == list(range(seqs[1], count + 3))
    assert len(events) < count / 4


async def test_a_submitted_runs_record_counts_every_event() -> None:
    count, size = 200, 16 * KB
    async with make_factory() as factory:
        handle = await factory.submit_run(
            UserExecutionContext.for_user("bob"), "streamer", {"count": count, "size": size}
        )
        async with asyncio.timeout(30):
            await handle.wait()
            assert await factory.runs.wait_finished(30)
        done = await factory.runs.get("bob", handle.run_id)
    assert done is not None and done.status == "succeeded"
    assert done.event_count == count + 2


async def test_a_handle_being_iterated_gets_every_event() -> None:
    count, size = 300, 16 * KB
    got: list[int] = []
    async with make_factory() as factory:
        async with factory.user_execution_engine(UserExecutionContext.for_user("carol")) as e:
            handle = await e.start_run("streamer", {"count": count, "size": size})
            async with asyncio.timeout(30):
                async for event in handle:
                    got.append(event.seq)
                    if event.seq % 7 == 0:
                        await asyncio.sleep(0)  # a reader slower than the run, now and then
            result = await handle.result()
    assert got == list(range(1, count + 3))
    assert result.events[-1].seq == count + 2
    assert sum(wire_size(e) for e in result.events) <= BUDGET + 17 * KB


async def test_a_handle_iterated_only_after_the_run_outgrew_its_budget_shows_the_gap() -> None:
    count, size = 100, 16 * KB
    async with make_factory() as factory:
        async with factory.user_execution_engine(UserExecutionContext.for_user("dave")) as e:
            handle = await e.start_run("streamer", {"count": count, "size": size})
            await handle.wait()
            async with asyncio.timeout(30):
                seqs = [event.seq async for event in handle]
    # agent_started, then the oldest retained on: the seq jump shows what was left out.
    assert seqs[0] == 1 and seqs[1] > 2
    assert seqs[1:] == list(range(seqs[1], count + 3))
