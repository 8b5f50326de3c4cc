"""tools= with registered and per-user MCP tools (the real mcp-server-time), names that match
nothing, and 20 users running a framework agent at once."""

from __future__ import annotations

import asyncio
from typing import Any

from agentengine import RunStatus
from agentengine_mcp import MCPPlugin
from agentengine_pydantic_ai import from_pydantic_ai
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, DeltaToolCall, FunctionModel

from .helpers import (
    Plugin,
    factory,
    pairs_keyed_by_call_id,
    run_once,
    shape,
    twenty_users_whoami,
)
from .scripted import Call, scripted

TIME_SERVER = {"name": "time", "command": "mcp-server-time", "args": ["--local-timezone", "UTC"]}


async def test_mcp_tools_of_the_users_own_session_by_glob() -> None:
    script = scripted(
        [Call("time__get_current_time", {"timezone": "Europe/Paris"}, "c1")], ["It is late."]
    )
    agent = from_pydantic_ai(Agent(script.model()), name="clock", tools=["time.*"])
    result = await run_once(agent, extra=[MCPPlugin(config={"servers": [TIME_SERVER]})])
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert script.tool_names() == ["time__convert_time", "time__get_current_time"]
    assert shape(result)[1:3] == [
        ("tool_executing", "time.get_current_time", {"timezone": "Europe/Paris"}),
        ("tool_completed", "time.get_current_time", "ok"),
    ]
    completed = next(e for e in result.events if e.type == "tool_completed")
    assert completed.result["timezone"] == "Europe/Paris"
    assert "Europe/Paris" in script.sent_text(1)


async def test_invalid_arguments_for_an_mcp_tool_are_checked_by_the_engine() -> None:
    script = scripted(
        [Call("time__get_current_time", {"zone": "UTC"}, "c1")],
        [Call("time__get_current_time", {"timezone": "UTC"}, "c2")],
        ["Done."],
    )
    agent = from_pydantic_ai(Agent(script.model()), name="clock", tools=["time.get_current_time"])
    result = await run_once(agent, extra=[MCPPlugin(config={"servers": [TIME_SERVER]})])
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert [e.status for e in result.events if e.type == "tool_completed"] == ["error", "ok"]
    pairs_keyed_by_call_id(result)


async def test_a_per_user_name_matching_nothing_fails_the_run_at_its_start() -> None:
    script = scripted(["never asked"])
    agent = from_pydantic_ai(Agent(script.model()), name="clock", tools=["forecast", "weather.*"])
    result = await run_once(agent, extra=[MCPPlugin(config={"servers": [TIME_SERVER]})])
    assert result.status is RunStatus.FAILED
    assert shape(result) == [
        ("agent_started",),
        ("agent_error", "UnknownToolsError"),
        ("agent_completed", "failed"),
    ]
    assert "'weather.*'" in (result.error or "")
    assert "time.get_current_time" in (result.error or "")  # what is available
    assert script.requests == []  # the model was never called


async def test_a_registered_name_matching_nothing_is_refused_at_factory_start() -> None:
    good = from_pydantic_ai(Agent(scripted(["hi"]).model()), name="good", tools=["fore*"])
    bad = from_pydantic_ai(Agent(scripted(["hi"]).model()), name="bad", tools=["forcast"])
    async with factory(Plugin(good, bad)) as f:
        assert "good" in f.agents
        assert "bad" not in f.agents
        error = f.get_factory_metrics()["plugin_errors"]["pydantic-ai-tests"]
        assert "'forcast' matches no registered tool" in error
        assert "forecast" in error  # the registered tools are listed


async def test_twenty_users_at_once_each_see_only_their_own_calls() -> None:
    barrier = asyncio.Barrier(20)

    async def stream(messages: list[ModelMessage], info: AgentInfo) -> Any:
        returns = [p for p in messages[-1].parts if isinstance(p, ToolReturnPart)]
        if not returns:
            await barrier.wait()  # every user's run is in flight at once
            yield {0: DeltaToolCall(name="whoami", json_args="{}", tool_call_id="same-id")}
        else:
            yield f"you are {returns[0].content}"

    agent = from_pydantic_ai(
        Agent(FunctionModel(stream_function=stream)), name="me", tools=["whoami"]
    )
    await twenty_users_whoami(agent)
