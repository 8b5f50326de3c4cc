"""tools= with registered and per-user MCP tools (the real mcp-server-time), names that match
nothing, and 20 users running an OpenAI Agents SDK agent at once."""

from __future__ import annotations

import asyncio
from typing import Any

from agentengine import RunStatus
from agentengine_mcp import MCPPlugin
from agentengine_openai_agents import from_openai_agents
from agents import Agent
from agents.testing import ModelCall, ModelStep, ScriptedModel
from framework_helpers import (
    Plugin,
    factory,
    pairs_keyed_by_call_id,
    run_once,
    shape,
    twenty_users_whoami,
)

from .scripted import call, scripted, sent_text, text, tool_names

TIME_SERVER = {"name": "time", "command": "mcp-server-time", "args": ["--local-timezone", "UTC"]}


async def test_mcp_tools_of_the_users_own_session_by_glob() -> None:
    model = scripted(
        [call("time__get_current_time", {"timezone": "Europe/Paris"}, "c1")], [text("It is late.")]
    )
    agent = from_openai_agents(Agent(name="sdk", model=model), name="clock", tools=["time.*"])
    result = await run_once(agent, extra=[MCPPlugin(config={"servers": [TIME_SERVER]})])
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert tool_names(model) == ["time__convert_time", "time__get_current_time"]
    assert shape(result)[1:3] == [
        ("tool_executing", "time.get_current_time", {"timezone": "Europe/Paris"}),
        ("tool_completed", "time.get_current_time", "ok"),
    ]
    completed = next(e for e in result.events if e.type == "tool_completed")
    assert completed.result["timezone"] == "Europe/Paris"
    assert "Europe/Paris" in sent_text(model, 1)
    pairs_keyed_by_call_id(result)


async def test_a_per_user_name_matching_nothing_fails_the_run_at_its_start() -> None:
    model = scripted([text("never asked")])
    agent = from_openai_agents(
        Agent(name="sdk", model=model), name="clock", tools=["forecast", "weather.*"]
    )
    result = await run_once(agent, extra=[MCPPlugin(config={"servers": [TIME_SERVER]})])
    assert result.status is RunStatus.FAILED
    assert shape(result) == [
        ("agent_started",),
        ("agent_error", "UnknownToolsError"),
        ("agent_completed", "failed"),
    ]
    assert "'weather.*'" in (result.error or "")
    assert "time.get_current_time" in (result.error or "")  # what is available
    assert model.calls == ()  # the model was never called


async def test_a_registered_name_matching_nothing_is_refused_at_factory_start() -> None:
    good = from_openai_agents(Agent(name="g", model=scripted()), name="good", tools=["fore*"])
    bad = from_openai_agents(Agent(name="b", model=scripted()), name="bad", tools=["forcast"])
    async with factory(Plugin(good, bad)) as f:
        assert "good" in f.agents
        assert "bad" not in f.agents
        error = f.get_factory_metrics()["plugin_errors"]["pydantic-ai-tests"]
        assert "'forcast' matches no registered tool" in error
        assert "forecast" in error  # the registered tools are listed


async def test_twenty_users_at_once_each_see_only_their_own_calls() -> None:
    barrier = asyncio.Barrier(20)

    async def respond(model_call: ModelCall) -> Any:
        outputs = [
            i
            for i in model_call.input
            if isinstance(i, dict) and i.get("type") == "function_call_output"
        ]
        if not outputs:
            await barrier.wait()  # every user's run is in flight at once
            return [call("whoami", {}, "same-id")]
        return [text(f"you are {outputs[0]['output']}")]

    model = ScriptedModel([ModelStep.respond(respond) for _ in range(40)])
    agent = from_openai_agents(Agent(name="sdk", model=model), name="me", tools=["whoami"])
    await twenty_users_whoami(agent)
