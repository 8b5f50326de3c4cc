"""Shared pieces of the framework adapters' tests: real tools, a plugin, one run with its checks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agentengine import (
    Agent,
    ExecutionEngineFactory,
    RunContext,
    RunResult,
    Settings,
    Tool,
    UserExecutionContext,
    hookimpl,
    tool,
)
from agentengine.testing import assert_run_invariants


@tool
async def forecast(city: str) -> str:
    """The weather forecast for a city."""
    return f"sunny in {city}"


@tool
async def broken(city: str) -> str:
    """A tool that always fails."""
    raise RuntimeError(f"no data for {city}")


@tool(name="math.add")
async def dotted_add(a: int, b: int) -> int:
    """Add two integers (a dotted name, as MCP tools have)."""
    return a + b


@tool
async def whoami(run: RunContext) -> str:
    """The user of the run calling the tool."""
    return run.user_id


TOOLS: tuple[Tool, ...] = (forecast, broken, dotted_add, whoami)


class Plugin:
    """Registers the test tools and the given agents."""

    name = "pydantic-ai-tests"

    def __init__(self, *agents: Agent, tools: Sequence[Tool] = TOOLS) -> None:
        self.agents = agents
        self.tools = tools

    @hookimpl
    def agentengine_register_tools(self, registry: Any) -> None:
        for t in self.tools:
            registry.add(t)

    @hookimpl
    def agentengine_register_agents(self, registry: Any) -> None:
        for a in self.agents:
            registry.add(a)


def factory(*plugins: Any, **kwargs: Any) -> ExecutionEngineFactory:
    kwargs.setdefault("load_entrypoints", False)
    kwargs.setdefault("config", Settings({}))
    kwargs.setdefault("environ", {})
    return ExecutionEngineFactory(plugins=list(plugins), **kwargs)


async def run_once(
    agent: Agent,
    message: str = "hi",
    *,
    extra: Sequence[Any] = (),
    user: str = "alice",
    **kwargs: Any,
) -> RunResult:
    """Run ``agent`` once for ``user``; the run's events keep every invariant."""
    async with (
        factory(Plugin(agent), *extra, **kwargs) as f,
        f.user_execution_engine(UserExecutionContext.for_user(user)) as engine,
    ):
        result = await engine.execute_agent(agent.name, {"message": message})
    assert_run_invariants(result.events)
    return result


def shape(result: RunResult) -> list[tuple[Any, ...]]:
    """The run's events reduced to what a test states: type and the telling fields."""
    out: list[tuple[Any, ...]] = []
    for e in result.events:
        if e.type == "agent_thinking":
            out.append((e.type, e.text, e.reasoning))
        elif e.type == "tool_executing":
            out.append((e.type, e.tool, e.args))
        elif e.type == "tool_completed":
            out.append((e.type, e.tool, e.status))
        elif e.type == "agent_completed":
            out.append((e.type, e.status))
        elif e.type == "agent_error":
            out.append((e.type, e.error_type))
        else:
            out.append((e.type,))
    return out


def pairs_keyed_by_call_id(result: RunResult) -> None:
    """Each tool_executing has exactly one tool_completed with its id, and the same tool."""
    started = {e.tool_call_id: e.tool for e in result.events if e.type == "tool_executing"}
    ended = [e for e in result.events if e.type == "tool_completed"]
    assert sorted(e.tool_call_id for e in ended) == sorted(started)
    for e in ended:
        assert started[e.tool_call_id] == e.tool
