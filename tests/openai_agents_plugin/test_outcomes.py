"""An OpenAI Agents SDK agent run through agentengine: the exact events of every outcome."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from agentengine import RegistrationError, RunStatus, ToolStatus
from agentengine_openai_agents import from_openai_agents
from agents import Agent, ModelBehaviorError, WebSearchTool, function_tool
from agents.testing import ModelStep
from agents.testing.model import _stream_events_for_step
from framework_helpers import (
    MiddlewarePlugin,
    cancelled_when,
    pairs_keyed_by_call_id,
    run_once,
    run_with_history,
    shape,
)
from openai.types.responses import ResponseFunctionWebSearch
from openai.types.responses.response_function_web_search import ActionSearch
from pydantic import BaseModel

from .scripted import Pieces, call, scripted, sent_text, text, think, tool_names


@function_tool
def double(x: int) -> int:
    """Double a number."""
    return x * 2


@function_tool
def explode(x: int) -> int:
    """A tool of the agent's own that always fails."""
    raise ValueError(f"cannot handle {x}")


@function_tool(failure_error_function=None)
def fatal(x: int) -> int:
    """A tool whose failure fails the run (the SDK's policy for it)."""
    raise ValueError(f"fatal {x}")


def framework_agent(model: Any, *tools: Any, **kwargs: Any) -> Agent[Any]:
    return Agent(name="sdk", model=model, tools=[double, explode, fatal, *tools], **kwargs)


async def test_text_only_is_batched_into_one_event_per_part() -> None:
    model = scripted(Pieces(("Hel", "lo", " there.")))
    agent = from_openai_agents(framework_agent(model), name="assistant", thinking_window=60)
    result = await run_once(agent)
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert result.output == "Hello there."
    assert shape(result) == [
        ("agent_started",),
        ("agent_thinking", "Hello there.", False),
        ("agent_completed", "succeeded"),
    ]


async def test_a_zero_window_gives_one_event_per_streamed_piece() -> None:
    model = scripted(Pieces(("Hel", "lo", "!")))
    agent = from_openai_agents(framework_agent(model), name="assistant", thinking_window=0)
    result = await run_once(agent)
    assert [e.text for e in result.events if e.type == "agent_thinking"] == ["Hel", "lo", "!"]


async def test_one_engine_tool_and_one_own_tool_with_reasoning() -> None:
    model = scripted(
        [
            think("I should check."),
            text("Let me check. "),
            call("forecast", {"city": "Paris"}, "c1"),
        ],
        [call("double", {"x": 21}, "c2")],
        [text("It is sunny and 42.")],
    )
    agent = from_openai_agents(framework_agent(model), name="assistant", tools=["forecast"])
    result = await run_once(agent, "weather?")
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert result.output == "It is sunny and 42."
    assert shape(result) == [
        ("agent_started",),
        ("agent_thinking", "I should check.", True),
        ("agent_thinking", "Let me check. ", False),
        ("tool_executing", "forecast", {"city": "Paris"}),
        ("tool_completed", "forecast", "ok"),
        ("tool_executing", "double", {"x": 21}),
        ("tool_completed", "double", "ok"),
        ("agent_thinking", "It is sunny and 42.", False),
        ("agent_completed", "succeeded"),
    ]
    pairs_keyed_by_call_id(result)
    assert "sunny in Paris" in sent_text(model, 1)
    assert "42" in sent_text(model, 2)
    assert tool_names(model) == ["double", "explode", "fatal", "forecast"]


async def test_two_parallel_calls_complete_in_any_order_each_keyed_by_its_id() -> None:
    fast_done = asyncio.Event()

    @function_tool
    async def slow_one() -> str:
        """Finishes after fast_one (so the calls must run at the same time)."""
        await asyncio.wait_for(fast_done.wait(), 10)
        return "slow"

    @function_tool
    async def fast_one() -> str:
        """Finishes at once."""
        fast_done.set()
        return "fast"

    model = scripted([call("slow_one", {}, "c1"), call("fast_one", {}, "c2")], [text("both")])
    agent = from_openai_agents(framework_agent(model, slow_one, fast_one), name="assistant")
    result = await run_once(agent)
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert shape(result)[1:5] == [
        ("tool_executing", "slow_one", {}),
        ("tool_executing", "fast_one", {}),
        ("tool_completed", "fast_one", "ok"),
        ("tool_completed", "slow_one", "ok"),
    ]
    pairs_keyed_by_call_id(result)


async def test_a_failing_engine_tool_is_reported_and_told_to_the_model() -> None:
    model = scripted([call("broken", {"city": "Oslo"}, "c1")], [text("Sorry, no data.")])
    agent = from_openai_agents(framework_agent(model), name="assistant", tools=["broken"])
    result = await run_once(agent)
    assert result.status is RunStatus.SUCCEEDED, result.error
    completed = next(e for e in result.events if e.type == "tool_completed")
    assert completed.status is ToolStatus.ERROR
    assert completed.error == "RuntimeError: no data for Oslo"
    assert "no data for Oslo" in sent_text(model, 1)
    assert result.output == "Sorry, no data."


async def test_a_failing_own_tool_keeps_the_sdks_failure_policy() -> None:
    model = scripted([call("explode", {"x": 3}, "c1")], [text("It failed.")])
    agent = from_openai_agents(framework_agent(model), name="assistant")
    result = await run_once(agent)
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert shape(result)[1:3] == [
        ("tool_executing", "explode", {"x": 3}),
        ("tool_completed", "explode", "error"),
    ]
    completed = next(e for e in result.events if e.type == "tool_completed")
    assert completed.error == "ValueError: cannot handle 3"
    assert "An error occurred while running the tool" in sent_text(model, 1)  # the SDK's text


async def test_an_own_tool_whose_policy_is_to_raise_fails_the_run() -> None:
    model = scripted([call("fatal", {"x": 1}, "c1")], [text("never")])
    agent = from_openai_agents(framework_agent(model), name="assistant")
    result = await run_once(agent)
    assert result.status is RunStatus.FAILED
    assert shape(result)[1:] == [
        ("tool_executing", "fatal", {"x": 1}),
        ("tool_completed", "fatal", "error"),
        ("agent_error", "UserError"),
        ("agent_completed", "failed"),
    ]
    assert "fatal 1" in (result.error or "")


async def test_invalid_arguments_for_an_engine_tool_are_checked_by_the_engine() -> None:
    model = scripted(
        [call("forecast", {"town": "Paris"}, "c1")],
        [call("forecast", {"city": "Paris"}, "c2")],
        [text("Sunny.")],
    )
    agent = from_openai_agents(framework_agent(model), name="assistant", tools=["forecast"])
    result = await run_once(agent)
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert shape(result)[1:5] == [
        ("tool_executing", "forecast", {"town": "Paris"}),
        ("tool_completed", "forecast", "error"),
        ("tool_executing", "forecast", {"city": "Paris"}),
        ("tool_completed", "forecast", "ok"),
    ]
    first = next(e for e in result.events if e.type == "tool_completed")
    assert "city" in (first.error or "")
    assert "city" in sent_text(model, 1)  # the model was told what to fix


async def test_arguments_that_are_not_json_still_give_one_pair() -> None:
    model = scripted(
        [call("forecast", "{not json", "c1"), call("double", "{not json", "c2")], [text("Oops.")]
    )
    agent = from_openai_agents(framework_agent(model), name="assistant", tools=["forecast"])
    result = await run_once(agent)
    assert result.status is RunStatus.SUCCEEDED, result.error
    completed = {e.tool: e for e in result.events if e.type == "tool_completed"}
    assert {t: e.status for t, e in completed.items()} == {"forecast": "error", "double": "error"}
    assert all(e.args == {"_raw": "{not json"} for e in result.events if e.type == "tool_executing")
    pairs_keyed_by_call_id(result)


async def test_a_tool_name_the_model_made_up_fails_the_run_as_the_sdk_does() -> None:
    model = scripted([call("teleport", {"to": "Mars"}, "c1")])
    agent = from_openai_agents(framework_agent(model), name="assistant")
    result = await run_once(agent)
    assert result.status is RunStatus.FAILED
    assert shape(result) == [
        ("agent_started",),
        ("agent_error", ModelBehaviorError.__name__),
        ("agent_completed", "failed"),
    ]
    assert "teleport" in (result.error or "")


async def test_a_model_error_fails_the_run() -> None:
    model = scripted(RuntimeError("provider overloaded (503)"))
    agent = from_openai_agents(framework_agent(model), name="assistant")
    result = await run_once(agent)
    assert result.status is RunStatus.FAILED
    assert shape(result) == [
        ("agent_started",),
        ("agent_error", "RuntimeError"),
        ("agent_completed", "failed"),
    ]
    assert "503" in (result.error or "")


async def test_max_turns_exceeded_fails_the_run() -> None:
    model = scripted([call("double", {"x": 1}, "c1")], [text("never reached")])
    agent = from_openai_agents(framework_agent(model), name="assistant", max_turns=1)
    result = await run_once(agent)
    assert result.status is RunStatus.FAILED
    assert shape(result) == [
        ("agent_started",),
        ("tool_executing", "double", {"x": 1}),
        ("tool_completed", "double", "ok"),
        ("agent_error", "MaxTurnsExceeded"),
        ("agent_completed", "failed"),
    ]


class Answer(BaseModel):
    city: str
    degrees: float


async def test_structured_output_is_json_data_and_history_reaches_the_model() -> None:
    model = scripted([text('{"city": "Paris", "degrees": 21.5}')])
    agent = from_openai_agents(framework_agent(model, output_type=Answer), name="assistant")
    result = await run_with_history(agent, "And now?")
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert result.output == {"city": "Paris", "degrees": 21.5}
    sent = sent_text(model, 0)
    assert sent.index("I am Ann.") < sent.index("Hello Ann.") < sent.index("And now?")


async def test_cancel_mid_stream_ends_the_run_cancelled() -> None:
    pieces = Pieces(("Working on it", " never"), gate=asyncio.Event())
    model = scripted(pieces)
    agent = from_openai_agents(framework_agent(model), name="assistant", thinking_window=0)
    result = await cancelled_when(agent, pieces.reached)
    assert shape(result) == [
        ("agent_started",),
        ("agent_thinking", "Working on it", False),
        ("agent_completed", "cancelled"),
    ]


async def test_cancel_during_a_tool_call_cancels_the_call_and_the_sdk_run() -> None:
    entered = asyncio.Event()
    stopped = asyncio.Event()

    @function_tool
    async def slow() -> str:
        """Take forever."""
        entered.set()
        try:
            await asyncio.sleep(60)
        finally:
            stopped.set()
        return "late"

    model = scripted([call("slow", {}, "c1")], [text("never")])
    agent = from_openai_agents(framework_agent(model, slow), name="assistant")
    result = await cancelled_when(agent, entered)
    assert shape(result) == [
        ("agent_started",),
        ("tool_executing", "slow", {}),
        ("tool_completed", "slow", "cancelled"),
        ("agent_completed", "cancelled"),
    ]
    assert stopped.is_set()  # the SDK's run, and the tool in it, stopped
    assert len(model.calls) == 1


async def test_the_run_deadline_times_the_run_out() -> None:
    pieces = Pieces(("Hmm", " never"), gate=asyncio.Event())
    agent = from_openai_agents(framework_agent(scripted(pieces)), name="assistant")
    result = await run_once(agent, run_timeout=0.5)
    assert result.status is RunStatus.TIMED_OUT
    assert shape(result)[-2:] == [("agent_error", "TimeoutError"), ("agent_completed", "timed_out")]


async def test_the_tool_timeout_applies_to_own_tools_and_the_model_is_told() -> None:
    @function_tool
    async def slow() -> str:
        """Take forever."""
        await asyncio.sleep(60)
        return "late"

    model = scripted([call("slow", {}, "c1")], [text("Too slow, sorry.")])
    agent = from_openai_agents(framework_agent(model, slow), name="assistant")
    result = await run_once(agent, tool_timeout=0.2)
    assert result.status is RunStatus.SUCCEEDED, result.error
    completed = next(e for e in result.events if e.type == "tool_completed")
    assert completed.status is ToolStatus.TIMEOUT
    assert "timed out" in sent_text(model, 1)


async def test_around_tool_middleware_sees_engine_and_own_tools() -> None:
    seen: list[str] = []
    model = scripted(
        [call("forecast", {"city": "Rome"}, "c1"), call("double", {"x": 2}, "c2")], [text("ok")]
    )
    agent = from_openai_agents(framework_agent(model), name="assistant", tools=["forecast"])
    result = await run_once(agent, extra=[MiddlewarePlugin(seen)])
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert sorted(seen) == ["double", "forecast"]
    by_tool = {e.tool: e for e in result.events if e.type == "tool_completed"}
    assert by_tool["forecast"].status is ToolStatus.OK
    assert by_tool["double"].status is ToolStatus.ERROR
    assert "not allowed" in (by_tool["double"].error or "")
    assert "not allowed" in sent_text(model, 1)


@pytest.mark.parametrize("pattern", ["math.*", "math.add"])
async def test_dotted_tool_names_are_mapped_for_the_model_and_back(pattern: str) -> None:
    model = scripted([call("math__add", {"a": 40, "b": 2}, "c1")], [text("42")])
    agent = from_openai_agents(framework_agent(model), name="assistant", tools=[pattern])
    result = await run_once(agent)
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert "math__add" in tool_names(model)
    assert shape(result)[1:3] == [
        ("tool_executing", "math.add", {"a": 40, "b": 2}),
        ("tool_completed", "math.add", "ok"),
    ]


def test_bad_options_are_refused_naming_the_agent() -> None:
    agent = framework_agent(scripted())
    with pytest.raises(Exception, match="agent 'a': thinking_window must be >= 0"):
        from_openai_agents(agent, name="a", thinking_window=-1)
    with pytest.raises(Exception, match="agent 'a': tools= holds ''"):
        from_openai_agents(agent, name="a", tools=[""])
    with pytest.raises(RegistrationError, match="agent 'a': max_turns must be >= 1"):
        from_openai_agents(agent, name="a", max_turns=0)


async def test_tools_of_an_agent_handed_off_to_are_reported_from_the_run_hooks() -> None:
    @function_tool
    def triple(x: int) -> int:
        """Triple a number."""
        return x * 3

    model = scripted(
        [text("Passing you on. "), call("transfer_to_expert", {}, "h1")],
        [call("triple", {"x": 5}, "c1")],
        [text("15.")],
    )
    expert: Agent[Any] = Agent(name="expert", model=model, tools=[triple])
    agent = from_openai_agents(framework_agent(model, handoffs=[expert]), name="assistant")
    result = await run_once(agent)
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert result.output == "15."
    assert shape(result) == [
        ("agent_started",),
        ("agent_thinking", "Passing you on. ", False),
        ("tool_executing", "triple", {"x": 5}),
        ("tool_completed", "triple", "ok"),
        ("agent_thinking", "15.", False),
        ("agent_completed", "succeeded"),
    ]
    completed = next(e for e in result.events if e.type == "tool_completed")
    assert completed.result == 15


async def test_a_call_the_provider_ran_itself_gets_its_pair_of_events() -> None:
    search = ResponseFunctionWebSearch(
        id="ws1",
        type="web_search_call",
        status="completed",
        action=ActionSearch(type="search", query="paris weather"),
    )
    answer = text("Sunny, says the web.")
    events = _stream_events_for_step(ModelStep(output=[answer]), preserve_raw_usage=False)
    done = events[-1]  # response.completed: what the turn produced, the search included
    events[-1] = done.model_copy(
        update={"response": done.response.model_copy(update={"output": [search, answer]})}
    )
    model = scripted(ModelStep.stream(events, output=[search, answer]))
    agent = from_openai_agents(framework_agent(model, WebSearchTool()), name="assistant")
    result = await run_once(agent)
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert shape(result) == [
        ("agent_started",),
        ("agent_thinking", "Sunny, says the web.", False),
        ("tool_executing", "web_search", {"type": "search", "query": "paris weather"}),
        ("tool_completed", "web_search", "ok"),
        ("agent_completed", "succeeded"),
    ]
    completed = next(e for e in result.events if e.type == "tool_completed")
    assert completed.result["id"] == "ws1"


async def test_the_run_deadline_stops_the_sdk_run_and_the_tool_in_it() -> None:
    stopped = asyncio.Event()

    @function_tool
    async def slow() -> str:
        """Take forever."""
        try:
            await asyncio.sleep(60)
        finally:
            stopped.set()
        return "late"

    model = scripted([call("slow", {}, "c1")], [text("never")])
    agent = from_openai_agents(framework_agent(model, slow), name="assistant")
    result = await run_once(agent, run_timeout=0.5)
    assert result.status is RunStatus.TIMED_OUT
    assert shape(result) == [
        ("agent_started",),
        ("tool_executing", "slow", {}),
        ("tool_completed", "slow", "cancelled"),
        ("agent_error", "TimeoutError"),
        ("agent_completed", "timed_out"),
    ]
    assert stopped.is_set()
    assert len(model.calls) == 1
