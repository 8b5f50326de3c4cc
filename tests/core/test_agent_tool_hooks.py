"""What the core offers agents that bring their own tools and reasoning (framework adapters):
``run.think(text, reasoning=True)``, ``run.call_tool(name, args, tool=...)``,
``run.tool_names()`` / ``run.get_tool()``, and ``agent.check_tools(registry)`` at factory start."""

from __future__ import annotations

from typing import Any

import pytest
from agentengine import (
    Agent,
    ExecutionEngineFactory,
    Extension,
    RegistrationError,
    RunContext,
    RunStatus,
    Settings,
    Tool,
    ToolArgumentError,
    ToolError,
    UserExecutionContext,
    agent,
    hookimpl,
    parse_event,
    tool,
)
from agentengine.cli.render import event_line
from agentengine.testing import assert_run_invariants


@tool
async def add(a: int, b: int) -> int:
    """Add."""
    return a + b


class Doubler(Tool):
    """A tool object an agent brings along, never registered."""

    def __init__(self) -> None:
        super().__init__("double", "Double x.")

    def validate_args(self, args: Any) -> dict[str, Any]:
        if not isinstance(args.get("x"), int):
            raise ToolArgumentError("x must be an integer")
        return dict(args)

    async def invoke(self, run: RunContext, args: dict[str, Any]) -> Any:
        return args["x"] * 2


@agent(name="brings")
async def brings(run: RunContext) -> Any:
    await run.think("plan", reasoning=True)
    await run.think("saying")
    ok = await run.call_tool("double", {"x": 21}, tool=Doubler())
    try:
        await run.call_tool("double", {"x": "no"}, tool=Doubler())
    except ToolError as exc:
        refused = exc.message
    # A name that is registered is not looked up when a tool is given.
    shadow = await run.call_tool("add", {"x": 1}, tool=Doubler())
    return {
        "ok": ok,
        "refused": refused,
        "shadow": shadow,
        "names": run.tool_names(),
        "add": run.get_tool("add") is add,
        "none": run.get_tool("nope"),
    }


class Plugin:
    name = "hooks-test"

    def __init__(self, *agents: Any) -> None:
        self.agents = agents

    @hookimpl
    def agentengine_register_tools(self, registry: Any) -> None:
        registry.add(add)

    @hookimpl
    def agentengine_register_agents(self, registry: Any) -> None:
        for a in self.agents:
            registry.add(a)


def make(*plugins: Any, **kwargs: Any) -> ExecutionEngineFactory:
    return ExecutionEngineFactory(
        plugins=list(plugins), load_entrypoints=False, config=Settings({}), environ={}, **kwargs
    )


async def test_reasoning_thinking_and_tools_an_agent_brings() -> None:
    async with (
        make(Plugin(brings)) as f,
        f.user_execution_engine(UserExecutionContext.for_user("alice")) as engine,
    ):
        result = await engine.execute_agent("brings", {})
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert_run_invariants(result.events)
    assert result.output == {
        "ok": 42,
        "refused": "x must be an integer",
        "shadow": 2,
        "names": ["add"],
        "add": True,
        "none": None,
    }
    thinking = [e for e in result.events if e.type == "agent_thinking"]
    assert [(e.text, e.reasoning) for e in thinking] == [("plan", True), ("saying", False)]
    # The field is on the wire and read back; events without it (older producers) read as False.
    wire = thinking[0].to_wire()
    assert wire["reasoning"] is True
    assert parse_event(wire).reasoning is True  # type: ignore[union-attr]
    del wire["reasoning"]
    assert parse_event(wire).reasoning is False  # type: ignore[union-attr]
    # The command line shows which is which.
    assert event_line(thinking[0]).endswith("agent_thinking  (reasoning) plan")
    assert event_line(thinking[1]).endswith("agent_thinking  saying")
    statuses = [(e.tool, e.status) for e in result.events if e.type == "tool_completed"]
    assert statuses == [("double", "ok"), ("double", "error"), ("add", "ok")]


class Checked(Agent):
    """An agent naming tools, checked when the factory starts."""

    def __init__(self, name: str, wanted: str) -> None:
        async def run_it(run: RunContext) -> str:
            return "ran"

        super().__init__(run_it, name=name)
        self.wanted = wanted

    def check_tools(self, tools: Any) -> None:
        if self.wanted not in tools:
            raise RegistrationError(f"agent {self.name!r} needs tool {self.wanted!r}")


async def test_an_agent_naming_a_missing_tool_is_refused_at_factory_start() -> None:
    good, bad = Checked("good", "add"), Checked("bad", "missing")
    async with make(Plugin(good, bad)) as f:
        assert "good" in f.agents and "bad" not in f.agents
        errors = f.get_factory_metrics()["plugin_errors"]
        assert "needs tool 'missing'" in errors["hooks-test"]


async def test_strict_plugins_make_a_missing_tool_an_error() -> None:
    with pytest.raises(Exception, match="needs tool 'missing'"):
        async with make(Plugin(Checked("bad", "missing")), strict_plugins=True):
            pass


class Listing:
    """An extension resolving per-user tools at call time, and listing them."""

    name = "listing"

    def __init__(self, user_tool: Any) -> None:
        self.user_tool = user_tool

    @hookimpl
    def agentengine_engine_extensions(self, context: Any, engine: Any) -> Any:
        plugin = self

        class Ext(Extension):
            async def resolve_tool(self, name: str) -> Any:
                return plugin.user_tool if name == plugin.user_tool.name else None

            async def list_tools(self) -> Any:
                # "add" is registered too: the registered one wins, as a call would get it.
                return [plugin.user_tool, tool(name="add")(add.func)]

        return Ext()


@agent(name="lister")
async def lister(run: RunContext) -> Any:
    tools = await run.list_tools()
    return [(t.name, t is add) for t in tools]


async def test_run_list_tools_lists_registered_and_resolvable_tools() -> None:
    @tool(name="user.echo")
    async def echo(text: str) -> str:
        """Echo."""
        return text

    async with (
        make(Plugin(lister), Listing(echo)) as f,
        f.user_execution_engine(UserExecutionContext.for_user("alice")) as engine,
    ):
        result = await engine.execute_agent("lister", {})
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert result.output == [("add", True), ("user.echo", False)]
