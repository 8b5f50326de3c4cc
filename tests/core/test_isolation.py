"""Isolation under concurrency: events reach only their own user, limits are per user."""

from __future__ import annotations

import asyncio
from typing import Any

from agentengine import (
    BaseEvent,
    ExecutionEngineFactory,
    Extension,
    RunContext,
    RunStatus,
    UserExecutionContext,
    agent,
    hookimpl,
)
from invariants import check_run, check_stream
from outcome_agents import OutcomesPlugin


async def collect(factory: ExecutionEngineFactory, user: str, expected: int, out: list[BaseEvent]):
    async for item in factory.events.subscribe(user):
        assert isinstance(item, BaseEvent), f"unexpected gap {item!r}"
        out.append(item)
        if len(out) >= expected:
            return


async def test_fifty_users_twenty_concurrent_runs_each() -> None:
    users = [f"user-{i:02d}" for i in range(50)]
    runs_per_user = 20
    events_per_run = 5  # started, thinking, tool executing, tool completed, completed
    factory = ExecutionEngineFactory(
        plugins=[OutcomesPlugin()],
        load_entrypoints=False,
        max_concurrent_per_user=runs_per_user,
        max_concurrent_runs=2000,
        event_retention=1000,
    )
    received: dict[str, list[BaseEvent]] = {u: [] for u in users}
    async with factory:
        subscribers = [
            asyncio.create_task(collect(factory, u, runs_per_user * events_per_run, received[u]))
            for u in users
        ]
        await asyncio.sleep(0)

        async def user_load(user: str) -> list[Any]:
            async with factory.user_execution_engine(UserExecutionContext.for_user(user)) as e:
                handles = [await e.start_run("quick", {"n": n}) for n in range(runs_per_user)]
                return [await h.result() for h in handles]

        results = await asyncio.gather(*(user_load(u) for u in users))
        await asyncio.wait_for(asyncio.gather(*subscribers), timeout=30)

    for user, user_results in zip(users, results, strict=True):
        assert all(r.status is RunStatus.SUCCEEDED for r in user_results)
        assert all(r.user_id == user for r in user_results)
        by_run = check_stream(user, received[user])
        assert len(by_run) == runs_per_user
        assert sorted(by_run) == sorted(r.run_id for r in user_results)
        for r in user_results:
            check_run(list(r.events))
            assert [e.seq for e in by_run[r.run_id]] == [e.seq for e in r.events]
            assert all(e.user_id == user for e in r.events)


class ConcurrencyProbe(Extension):
    """Records the most runs of one user in flight at once."""

    def __init__(self, counters: dict[str, list[int]], user_id: str) -> None:
        self.counters = counters
        self.user_id = user_id

    async def around_run(self, run: RunContext, call_next):  # type: ignore[no-untyped-def]
        current = self.counters.setdefault(self.user_id, [0, 0])
        current[0] += 1
        current[1] = max(current[1], current[0])
        try:
            return await call_next()
        finally:
            current[0] -= 1


class ProbePlugin:
    name = "probe"

    def __init__(self) -> None:
        self.counters: dict[str, list[int]] = {}

    @hookimpl
    def agentengine_engine_extensions(self, context, engine):  # type: ignore[no-untyped-def]
        return ConcurrencyProbe(self.counters, context.user_id)


@agent(name="hold")
async def hold(run: RunContext, seconds: float) -> str:
    await asyncio.sleep(seconds)
    return run.user_id


class HoldPlugin:
    name = "hold"

    @hookimpl
    def agentengine_register_agents(self, registry):  # type: ignore[no-untyped-def]
        registry.add(hold)


async def test_per_user_limit_spans_engines_and_other_users_run_unhindered() -> None:
    probe = ProbePlugin()
    factory = ExecutionEngineFactory(
        plugins=[HoldPlugin(), probe],
        load_entrypoints=False,
        max_concurrent_per_user=2,
        max_engines_per_user=5,
    )
    async with factory:
        a1 = await factory.create_for_user(UserExecutionContext.for_user("alice"))
        a2 = await factory.create_for_user(UserExecutionContext.for_user("alice"))
        bob = await factory.create_for_user(UserExecutionContext.for_user("bob"))
        alice_runs = [await eng.start_run("hold", {"seconds": 0.2}) for eng in (a1, a2, a1, a2)]
        await asyncio.sleep(0.05)
        # Alice has four runs queued against a limit of 2; Bob's run starts at once.
        bob_handle = await bob.start_run("hold", {"seconds": 0.01})
        bob_result = await asyncio.wait_for(bob_handle.result(), timeout=0.15)
        assert bob_result.status is RunStatus.SUCCEEDED
        assert not all(h.done for h in alice_runs)
        results = [await h.result() for h in alice_runs]
        for engine in (a1, a2, bob):
            await engine.cleanup()
    assert all(r.status is RunStatus.SUCCEEDED for r in results)
    assert probe.counters["alice"][1] == 2
    assert probe.counters["bob"][1] == 1


async def test_global_limit_caps_all_users() -> None:
    probe = ProbePlugin()
    total = {"now": 0, "max": 0}

    class Global(Extension):
        async def around_run(self, run, call_next):  # type: ignore[no-untyped-def]
            total["now"] += 1
            total["max"] = max(total["max"], total["now"])
            try:
                return await call_next()
            finally:
                total["now"] -= 1

    class GlobalPlugin:
        name = "global-probe"

        @hookimpl
        def agentengine_engine_extensions(self):  # type: ignore[no-untyped-def]
            return Global()

    factory = ExecutionEngineFactory(
        plugins=[HoldPlugin(), probe, GlobalPlugin()],
        load_entrypoints=False,
        max_concurrent_per_user=5,
        max_concurrent_runs=3,
    )
    async with factory:
        engines = [
            await factory.create_for_user(UserExecutionContext.for_user(f"u{i}")) for i in range(4)
        ]
        handles = [await e.start_run("hold", {"seconds": 0.05}) for e in engines for _ in range(2)]
        results = [await h.result() for h in handles]
    assert all(r.status is RunStatus.SUCCEEDED for r in results)
    assert total["max"] == 3


async def test_results_carry_only_the_callers_output_under_interleaving() -> None:
    factory = ExecutionEngineFactory(plugins=[HoldPlugin()], load_entrypoints=False)
    async with factory:

        async def one(user: str) -> tuple[str, Any]:
            async with factory.user_execution_engine(UserExecutionContext.for_user(user)) as e:
                r = await e.execute_agent("hold", {"seconds": 0.001 * (hash(user) % 7)})
                return user, r.output

        pairs = await asyncio.gather(*(one(f"user{i}") for i in range(200)))
    assert all(user == output for user, output in pairs)


async def test_a_users_events_show_the_limit_holding_in_process() -> None:
    """``agent_started`` marks the start of a run's execution, after it was admitted under
    ``max_concurrent_per_user`` (runs an engine starts beyond it wait): on the user's log,
    never more than the limit of the user's runs are between their ``agent_started`` and
    ``agent_completed``, and the runs over the limit start in the order they were
    submitted."""
    factory = ExecutionEngineFactory(
        plugins=[HoldPlugin()], load_entrypoints=False, max_concurrent_per_user=2
    )
    async with factory:
        engine = await factory.create_for_user(UserExecutionContext.for_user("alice"))
        handles = [await engine.start_run("hold", {"seconds": 0.05}) for _ in range(6)]
        await asyncio.gather(*(h.result() for h in handles))
        events: list[BaseEvent] = []
        await asyncio.wait_for(collect(factory, "alice", 6 * 2, events), 10)
        await engine.cleanup()
    executing = peak = 0
    for event in events:
        executing += {"agent_started": 1, "agent_completed": -1}.get(event.type, 0)
        peak = max(peak, executing)
    assert peak == 2, [(e.type, e.run_id) for e in events]
    started = [e.run_id for e in events if e.type == "agent_started"]
    assert started == [h.run_id for h in handles]


async def test_a_run_ended_before_its_turn_still_starts_once_and_holds_no_slot() -> None:
    """With one slot: a run cancelled while it waits for the slot gets its ``agent_started``,
    then ``agent_completed`` ``cancelled``; a run cancelled before its task took a step gives
    its slot back; the next run executes."""
    factory = ExecutionEngineFactory(
        plugins=[HoldPlugin()], load_entrypoints=False, max_concurrent_per_user=1
    )
    async with factory:
        engine = await factory.create_for_user(UserExecutionContext.for_user("alice"))
        early = await engine.start_run("hold", {"seconds": 30})  # has the slot at once
        early.cancel_nowait()  # before its task ran a step
        holder = await engine.start_run("hold", {"seconds": 0.2})
        waiting = await engine.start_run("hold", {"seconds": 30})
        await asyncio.sleep(0.05)
        waiting.cancel_nowait()
        last = await engine.start_run("hold", {"seconds": 0})
        results = [await asyncio.wait_for(h.result(), 10) for h in (early, holder, waiting, last)]
        assert [r.status for r in results] == [
            RunStatus.CANCELLED,
            RunStatus.SUCCEEDED,
            RunStatus.CANCELLED,
            RunStatus.SUCCEEDED,
        ]
        events: list[BaseEvent] = []
        await asyncio.wait_for(collect(factory, "alice", 4 * 2, events), 10)
        await engine.cleanup()
    for handle in (early, holder, waiting, last):
        check_run([e for e in events if e.run_id == handle.run_id])
    assert [(e.type, e.run_id) for e in events][:2] == [
        ("agent_started", early.run_id),
        ("agent_completed", early.run_id),
    ]
    # The waiting run started (on the log) only when it ended, after the holder's start.
    order = [(e.type, e.run_id) for e in events]
    assert order.index(("agent_started", waiting.run_id)) > order.index(
        ("agent_started", holder.run_id)
    )
