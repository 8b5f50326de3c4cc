"""What the framework adapters' benches share: the timing loop and the plugin they register."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from agentengine import hookimpl, tool


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
