"""What the framework adapters' benches share: the timing loop and the plugin they register."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from agentengine import (
    ExecutionEngineFactory,
    Settings,
    UserExecutionContext,
    hookimpl,
    tool,
)


async def forecast_impl(city: str) -> str:
    """The weather forecast for a city."""
    return f"sunny in {city}"


async def double_impl(x: int) -> int:
    """Double a number."""
    return x * 2


class Plugin:
    """Registers ``forecast`` and ``double`` as agentengine tools, and the given agents."""

    def __init__(self, agents: list[Any]) -> None:
        self.agents = agents

    @hookimpl
    def agentengine_register_tools(self, registry: Any) -> None:
        registry.add(tool(name="forecast")(forecast_impl))
        registry.add(tool(name="double")(double_impl))

    @hookimpl
    def agentengine_register_agents(self, registry: Any) -> None:
        for a in self.agents:
            registry.add(a)


async def timed(runs: int, variants: dict[str, Callable[[], Awaitable[Any]]]) -> dict[str, float]:
    """Microseconds per run of each variant: rounds of ``runs`` runs alternate between the
    variants (so a burst of load on the machine hits all of them), best of five rounds."""
    for once in variants.values():  # warm up
        for _ in range(max(runs // 10, 20)):
            await once()
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(5):
        for name, once in variants.items():
            start = time.perf_counter()
            for _ in range(runs):
                await once()
            best[name] = min(best[name], (time.perf_counter() - start) / runs * 1e6)
    return best


async def measure(
    runs: int, direct: Callable[[], Awaitable[Any]], own: Any, engine_tools: Any
) -> dict[str, float]:
    """Time ``direct`` against ``engine.execute_agent`` of the adapted agents ``own`` (the
    tools are the framework agent's own) and ``engine_tools`` (``tools=["forecast",
    "double"]``); each must make two tool calls. Microseconds per run and the ratios."""
    factory = ExecutionEngineFactory(
        plugins=[Plugin([own, engine_tools])],
        load_entrypoints=False,
        config=Settings({}),
        environ={},
    )
    async with (
        factory,
        factory.user_execution_engine(UserExecutionContext.for_user("bench")) as engine,
    ):
        for name in (own.name, engine_tools.name):
            check = await engine.execute_agent(name, {"message": "weather?"})
            assert check.succeeded, check.error
            assert [e.type for e in check.events].count("tool_completed") == 2

        def through(name: str) -> Callable[[], Awaitable[Any]]:
            async def once() -> Any:
                return await engine.execute_agent(name, {"message": "weather?"})

            return once

        figures = await timed(
            runs,
            {
                "direct_stream_us": direct,
                "agentengine_own_tools_us": through(own.name),
                "agentengine_engine_tools_us": through(engine_tools.name),
            },
        )
    base = figures["direct_stream_us"]
    figures["ratio_own_tools"] = figures["agentengine_own_tools_us"] / base
    figures["ratio_engine_tools"] = figures["agentengine_engine_tools_us"] / base
    return figures


def report(figures: dict[str, float], direct_label: str, as_json: bool) -> None:
    """Print the figures (as JSON, or one line each)."""
    f = figures
    if as_json:
        print(json.dumps(f))
        return
    print(f"{direct_label:<32}{f['direct_stream_us']:8.1f} us/run")
    print(
        f"agentengine, the agent's tools: {f['agentengine_own_tools_us']:8.1f} us/run, "
        f"ratio {f['ratio_own_tools']:.2f}x (target <= 1.2x)"
    )
    print(
        f"agentengine, agentengine tools: {f['agentengine_engine_tools_us']:8.1f} us/run, "
        f"ratio {f['ratio_engine_tools']:.2f}x (target <= 1.2x)"
    )
