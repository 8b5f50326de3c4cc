"""Cost of request scoping per run, as ratios against a floor measured in the same process.

floor      a factory with no scoped resource declared: no request_scope layer at all
declared   a resource is declared but the agent does not use it: one around_run layer
used       the agent opens the resource (a trivial async context manager) and it is closed

Run: uv run python bench/request_scope.py [runs]
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from typing import Any

from agentengine import (
    ExecutionEngineFactory,
    RunContext,
    Settings,
    UserExecutionContext,
    agent,
    hookimpl,
)


@agent(name="noop")
async def noop(run: RunContext) -> int:
    """Do nothing."""
    return 1


@agent(name="uses")
async def uses(run: RunContext) -> Any:
    """Open the scoped resource."""
    return await run.scope["res"]


class Agents:
    name = "agents"

    @hookimpl
    def agentengine_register_agents(self, registry: Any) -> None:
        registry.add(noop)
        registry.add(uses)


class Resource:
    name = "resource"

    @hookimpl
    def agentengine_register_resources(self, registry: Any) -> None:
        @contextlib.asynccontextmanager
        async def res() -> Any:
            yield 1

        registry.add("res", res)


async def runs_per_second(plugins: list[Any], agent_name: str, runs: int) -> float:
    async with ExecutionEngineFactory(
        plugins=plugins, load_entrypoints=False, config=Settings(), environ={}
    ) as factory:
        ctx = UserExecutionContext.for_user("bench")
        async with factory.user_execution_engine(ctx) as engine:
            for _ in range(200):
                await engine.execute_agent(agent_name)
            started = time.perf_counter()
            for _ in range(runs):
                await engine.execute_agent(agent_name)
            return runs / (time.perf_counter() - started)


async def main(runs: int) -> None:
    best: dict[str, float] = {}
    for _ in range(3):  # best of three: the machine is shared and noisy
        for label, plugins, agent_name in (
            ("floor", [Agents()], "noop"),
            ("declared", [Agents(), Resource()], "noop"),
            ("used", [Agents(), Resource()], "uses"),
        ):
            rate = await runs_per_second(plugins, agent_name, runs)
            best[label] = max(best.get(label, 0.0), rate)
    floor = best["floor"]
    print(f"runs per measurement: {runs}")
    for label, rate in best.items():
        print(f"{label:<9} {rate:10.0f} runs/s   ratio to floor {rate / floor:5.2f}")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 3000))
