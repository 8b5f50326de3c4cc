"""Agents and tools exercising every outcome of a run, and a plugin that registers them."""

from __future__ import annotations

import asyncio

from agentengine import RunContext, ToolError, agent, hookimpl, tool


@tool
async def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
async def explode(message: str = "boom") -> None:
    """Raise an error."""
    raise RuntimeError(message)


@tool(timeout=0.05)
async def slow_tool(seconds: float = 5.0) -> str:
    """Sleep longer than its timeout."""
    await asyncio.sleep(seconds)
    return "late"


@tool
async def nap(seconds: float) -> float:
    """Sleep, then return how long."""
    await asyncio.sleep(seconds)
    return seconds


@agent(name="calc")
async def calc(run: RunContext, text: str) -> str:
    await run.think("adding")
    total = await run.call_tool("add", {"a": 1, "b": 2})
    return f"{text}: {total}"


@agent(name="agent_raises")
async def agent_raises(run: RunContext) -> None:
    await run.think("about to fail")
    raise ValueError("agent broke")


@agent(name="tool_raises")
async def tool_raises(run: RunContext) -> None:
    await run.call_tool("explode", {"message": "kaboom"})


@agent(name="bad_args")
async def bad_args(run: RunContext) -> None:
    await run.call_tool("add", {"a": "not a number"})


@agent(name="tool_times_out")
async def tool_times_out(run: RunContext) -> None:
    await run.call_tool("slow_tool", {})


@agent(name="catches_tool_error")
async def catches_tool_error(run: RunContext) -> str:
    try:
        await run.call_tool("explode", {})
    except ToolError as exc:
        return f"recovered from {exc.message}"
    return "unreachable"


@agent(name="sleeper")
async def sleeper(run: RunContext, seconds: float = 10.0) -> str:
    await run.think("sleeping")
    await run.call_tool("nap", {"seconds": seconds})
    return "woke"


@agent(name="quick")
async def quick(run: RunContext, n: int = 0) -> int:
    await run.think(f"step {n}")
    await run.call_tool("add", {"a": n, "b": 1})
    await asyncio.sleep(0)
    return n


@agent(name="parallel_tools")
async def parallel_tools(run: RunContext) -> list[str]:
    """Two tool calls at once, in tasks of their own (gather): one times out, one finishes."""
    outcomes = await asyncio.gather(
        run.call_tool("slow_tool", {}),
        run.call_tool("nap", {"seconds": 0.2}),
        return_exceptions=True,
    )
    return [type(o).__name__ for o in outcomes]


class OutcomesPlugin:
    """Agents that succeed, fail, time out and sleep; used by the core tests."""

    name = "outcomes"

    @hookimpl
    def agentengine_register_agents(self, registry):  # type: ignore[no-untyped-def]
        for a in (
            calc,
            agent_raises,
            tool_raises,
            bad_args,
            tool_times_out,
            catches_tool_error,
            sleeper,
            quick,
            parallel_tools,
        ):
            registry.add(a)

    @hookimpl
    def agentengine_register_tools(self, registry):  # type: ignore[no-untyped-def]
        for t in (add, explode, slow_tool, nap):
            registry.add(t)
