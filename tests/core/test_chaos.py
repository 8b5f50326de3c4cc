"""Random mixes of outcomes, cancellations and cleanups across users, concurrently: every run
keeps every invariant, and every stream holds only its user's events."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from agentengine import BaseEvent, ExecutionEngineFactory, RunStatus, UserExecutionContext
from invariants import check_run, check_stream
from outcome_agents import OutcomesPlugin

AGENTS: list[tuple[str, dict[str, Any]]] = [
    ("calc", {"text": "t"}),
    ("agent_raises", {}),
    ("tool_raises", {}),
    ("bad_args", {}),
    ("tool_times_out", {}),
    ("catches_tool_error", {}),
    ("sleeper", {"seconds": 0.05}),
    ("sleeper", {"seconds": 5}),
    ("quick", {"n": 3}),
]


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_chaos(seed: int) -> None:
    rng = random.Random(seed)
    users = [f"user-{i}" for i in range(12)]
    factory = ExecutionEngineFactory(
        plugins=[OutcomesPlugin()],
        load_entrypoints=False,
        max_concurrent_per_user=3,
        max_engines_per_user=4,
        run_timeout=1.0,
        drain_timeout=0.2,
    )
    results: list[Any] = []
    streams: dict[str, list[BaseEvent]] = {u: [] for u in users}

    async def follow(user: str) -> None:
        async for item in factory.events.subscribe(user):
            assert isinstance(item, BaseEvent)
            streams[user].append(item)

    async def session(user: str) -> None:
        for _ in range(rng.randint(1, 3)):
            engine = await factory.create_for_user(UserExecutionContext.for_user(user))
            handles = []  # runs in their own tasks (start_run)
            inline = []  # runs inside a caller's task (execute_agent)
            for _ in range(rng.randint(1, 6)):
                agent, run_input = rng.choice(AGENTS)
                if rng.random() < 0.5:
                    handles.append(await engine.start_run(agent, run_input))
                else:
                    inline.append(asyncio.ensure_future(engine.execute_agent(agent, run_input)))
            await asyncio.sleep(rng.random() * 0.1)
            action = rng.random()
            if action < 0.3:
                for h in handles:
                    h.cancel_nowait()
            elif action < 0.6:
                await engine.cleanup()
            results.extend([await h.result() for h in handles])
            results.extend(await asyncio.gather(*inline))
            await engine.cleanup()

    followers = [asyncio.create_task(follow(u)) for u in users]
    await asyncio.sleep(0)
    await asyncio.wait_for(asyncio.gather(*(session(u) for u in users)), timeout=60)
    await factory.shutdown()
    await asyncio.wait_for(asyncio.gather(*followers), timeout=5)

    assert results
    statuses = {r.status for r in results}
    assert RunStatus.SUCCEEDED in statuses and RunStatus.FAILED in statuses
    for result in results:
        check_run(list(result.events))
    total_events = 0
    for user in users:
        by_run = check_stream(user, streams[user])
        total_events += sum(len(v) for v in by_run.values())
        mine = [r for r in results if r.user_id == user]
        assert sorted(by_run) == sorted(r.run_id for r in mine)
        for r in mine:
            assert [(e.seq, e.type) for e in by_run[r.run_id]] == [
                (e.seq, e.type) for e in r.events
            ]
    assert total_events == sum(len(r.events) for r in results)
    metrics = factory.get_factory_metrics()
    assert metrics["engines_active"] == 0 and metrics["runs_active"] == 0
    assert metrics["runs"] == len(results)
