"""A pydantic-ai agent run through agentengine: the exact events of every outcome."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from agentengine import RunStatus, ToolStatus
from agentengine_pydantic_ai import from_pydantic_ai
from pydantic import BaseModel
from pydantic_ai import Agent, ModelRetry
from pydantic_ai.exceptions import ModelHTTPError
from pydantic_ai.usage import UsageLimits

from .helpers import (
    MiddlewarePlugin,
    cancelled_when,
    pairs_keyed_by_call_id,
    run_once,
    run_with_history,
    shape,
)
from .scripted import Call, Raise, Think, Wait, scripted


def framework_agent(script: Any, **kwargs: Any) -> Agent[Any, Any]:
    agent: Agent[Any, Any] = Agent(script.model(), **kwargs)

    @agent.tool_plain
    def double(x: int) -> int:
        """Double a number."""
        return x * 2

    @agent.tool_plain
    def picky(x: int) -> int:
        """Accept only even numbers."""
        if x % 2:
            raise ModelRetry(f"{x} is odd; pass an even number")
        return x

    return agent


async def test_success_with_an_engine_tool_and_an_own_tool() -> None:
    script = scripted(
        [
            "Let me check. ",
            Call("forecast", {"city": "Paris"}, "c1"),
            Call("double", {"x": 21}, "c2"),
        ],
        ["It is sunny", " and 42."],
    )
    agent = from_pydantic_ai(framework_agent(script), name="assistant", tools=["forecast"])
    result = await run_once(agent, "weather?")

    assert result.status is RunStatus.SUCCEEDED, result.error
    assert result.output == "It is sunny and 42."
    assert shape(result) == [
        ("agent_started",),
        ("agent_thinking", "Let me check. ", False),
        ("tool_executing", "forecast", {"city": "Paris"}),
        ("tool_completed", "forecast", "ok"),
        ("tool_executing", "double", {"x": 21}),
        ("tool_completed", "double", "ok"),
        ("agent_thinking", "It is sunny and 42.", False),
        ("agent_completed", "succeeded"),
    ]
    pairs_keyed_by_call_id(result)
    # The model got both results back, and was offered the engine tool and its own.
    assert "sunny in Paris" in script.sent_text(1) and "42" in script.sent_text(1)
    assert script.tool_names() == ["double", "forecast", "picky"]


async def test_reasoning_is_marked_and_text_batched_per_part() -> None:
    script = scripted([Think("I should "), Think("answer."), "Hel", "lo", "!"])
    agent = from_pydantic_ai(framework_agent(script), name="assistant", thinking_window=60)
    result = await run_once(agent)
    thinking = [(e.text, e.reasoning) for e in result.events if e.type == "agent_thinking"]
    assert thinking == [("I should answer.", True), ("Hello!", False)]
    assert result.output == "Hello!"


async def test_a_zero_window_gives_one_event_per_streamed_piece() -> None:
    script = scripted(["Hel", "lo", "!"])
    agent = from_pydantic_ai(framework_agent(script), name="assistant", thinking_window=0)
    result = await run_once(agent)
    assert [e.text for e in result.events if e.type == "agent_thinking"] == ["Hel", "lo", "!"]


async def test_a_failing_engine_tool_is_reported_and_told_to_the_model() -> None:
    script = scripted([Call("broken", {"city": "Oslo"}, "c1")], ["Sorry, no data."])
    agent = from_pydantic_ai(framework_agent(script), name="assistant", tools=["broken"])
    result = await run_once(agent)
    assert result.status is RunStatus.SUCCEEDED, result.error
    completed = next(e for e in result.events if e.type == "tool_completed")
    assert completed.status is ToolStatus.ERROR
    assert completed.error == "RuntimeError: no data for Oslo"
    assert "no data for Oslo" in script.sent_text(1)  # as a failed tool return
    assert result.output == "Sorry, no data."


async def test_invalid_arguments_for_an_engine_tool_are_retried_under_a_new_call_id() -> None:
    script = scripted(
        [Call("forecast", {"town": "Paris"}, "c1")],
        [Call("forecast", {"city": "Paris"}, "c2")],
        ["Sunny."],
    )
    agent = from_pydantic_ai(framework_agent(script), name="assistant", tools=["forecast"])
    result = await run_once(agent)
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert shape(result)[1:5] == [
        ("tool_executing", "forecast", {"town": "Paris"}),
        ("tool_completed", "forecast", "error"),
        ("tool_executing", "forecast", {"city": "Paris"}),
        ("tool_completed", "forecast", "ok"),
    ]
    ids = [e.tool_call_id for e in result.events if e.type == "tool_executing"]
    assert len(set(ids)) == 2
    first = next(e for e in result.events if e.type == "tool_completed")
    assert "city" in (first.error or "")  # the engine's validation names the missing field
    assert "city" in script.sent_text(1)  # and the model was asked to fix the call


async def test_invalid_arguments_for_an_own_tool_still_give_one_pair() -> None:
    script = scripted([Call("double", {"x": "many"}, "c1")], ["Gave up."])
    agent = from_pydantic_ai(framework_agent(script), name="assistant")
    result = await run_once(agent)
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert shape(result)[1:3] == [
        ("tool_executing", "double", {"x": "many"}),
        ("tool_completed", "double", "error"),
    ]
    pairs_keyed_by_call_id(result)


async def test_model_retry_from_an_own_tool_then_success() -> None:
    script = scripted([Call("picky", {"x": 3}, "c1")], [Call("picky", {"x": 4}, "c2")], ["Done."])
    agent = from_pydantic_ai(framework_agent(script), name="assistant")
    result = await run_once(agent)
    assert result.status is RunStatus.SUCCEEDED, result.error
    completed = [e for e in result.events if e.type == "tool_completed"]
    assert [c.status for c in completed] == ["error", "ok"]
    assert "3 is odd" in (completed[0].error or "")
    pairs_keyed_by_call_id(result)


async def test_an_unknown_tool_name_from_the_model_gets_a_pair() -> None:
    script = scripted([Call("teleport", {"to": "Mars"}, "c1")], ["Cannot."])
    agent = from_pydantic_ai(framework_agent(script), name="assistant")
    result = await run_once(agent)
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert shape(result)[1:3] == [
        ("tool_executing", "teleport", {"to": "Mars"}),
        ("tool_completed", "teleport", "error"),
    ]
    completed = next(e for e in result.events if e.type == "tool_completed")
    assert "teleport" in (completed.error or "")


async def test_too_many_retries_fail_the_run() -> None:
    script = scripted([Call("picky", {"x": 1}, "c1")], [Call("picky", {"x": 3}, "c2")])
    agent = from_pydantic_ai(framework_agent(script, retries=1), name="assistant")
    result = await run_once(agent)
    assert result.status is RunStatus.FAILED
    assert [e.type for e in result.events if e.type.startswith("tool")] == [
        "tool_executing",
        "tool_completed",
        "tool_executing",
        "tool_completed",
    ]
    error = next(e for e in result.events if e.type == "agent_error")
    assert error.error_type == "UnexpectedModelBehavior"


async def test_a_model_error_fails_the_run() -> None:
    exc = ModelHTTPError(status_code=503, model_name="scripted", body="overloaded")
    script = scripted(["Thinking", Raise(exc)])
    agent = from_pydantic_ai(framework_agent(script), name="assistant")
    result = await run_once(agent)
    assert result.status is RunStatus.FAILED
    assert shape(result)[-2:] == [("agent_error", "ModelHTTPError"), ("agent_completed", "failed")]
    assert "503" in (result.error or "")


async def test_usage_limits_exceeded_fail_the_run() -> None:
    script = scripted([Call("double", {"x": 1}, "c1")], ["never reached"])
    agent = from_pydantic_ai(
        framework_agent(script), name="assistant", usage_limits=UsageLimits(request_limit=1)
    )
    result = await run_once(agent)
    assert result.status is RunStatus.FAILED
    assert shape(result) == [
        ("agent_started",),
        ("tool_executing", "double", {"x": 1}),
        ("tool_completed", "double", "ok"),
        ("agent_error", "UsageLimitExceeded"),
        ("agent_completed", "failed"),
    ]


class Answer(BaseModel):
    city: str
    degrees: float


async def test_structured_output_is_json_data() -> None:
    script = scripted([Call("final_result", {"city": "Paris", "degrees": 21.5}, "c1")])
    agent = from_pydantic_ai(framework_agent(script, output_type=Answer), name="assistant")
    result = await run_once(agent)
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert result.output == {"city": "Paris", "degrees": 21.5}
    # The output tool is the answer, not a tool call of the run.
    assert not [e for e in result.events if e.type.startswith("tool")]


async def test_history_reaches_the_model() -> None:
    script = scripted(["Your name is Ann."])
    agent = from_pydantic_ai(framework_agent(script), name="assistant")
    result = await run_with_history(agent, "What is my name?")
    assert result.status is RunStatus.SUCCEEDED, result.error
    sent = script.sent_text(0)
    assert "I am Ann." in sent and "Hello Ann." in sent and "What is my name?" in sent


async def test_cancel_mid_stream_ends_the_run_cancelled() -> None:
    gate = asyncio.Event()
    wait = Wait(gate)
    script = scripted(["Working on it", wait, "never"])
    agent = from_pydantic_ai(framework_agent(script), name="assistant", thinking_window=0)
    result = await cancelled_when(agent, wait.reached)
    assert shape(result) == [
        ("agent_started",),
        ("agent_thinking", "Working on it", False),
        ("agent_completed", "cancelled"),
    ]


async def test_cancel_during_a_tool_call_cancels_the_call_and_the_run() -> None:
    entered = asyncio.Event()

    script = scripted([Call("slow", {}, "c1")], ["never"])
    fa: Agent[Any, Any] = Agent(script.model())

    @fa.tool_plain
    async def slow() -> str:
        """Take forever."""
        entered.set()
        await asyncio.sleep(60)
        return "late"

    agent = from_pydantic_ai(fa, name="assistant")
    result = await cancelled_when(agent, entered)
    assert shape(result) == [
        ("agent_started",),
        ("tool_executing", "slow", {}),
        ("tool_completed", "slow", "cancelled"),
        ("agent_completed", "cancelled"),
    ]


async def test_the_run_deadline_times_the_run_out() -> None:
    script = scripted(["Hmm", Wait(asyncio.Event())])
    agent = from_pydantic_ai(framework_agent(script), name="assistant", thinking_window=0)
    result = await run_once(agent, run_timeout=0.5)
    assert result.status is RunStatus.TIMED_OUT
    assert shape(result)[-2:] == [("agent_error", "TimeoutError"), ("agent_completed", "timed_out")]


async def test_the_tool_timeout_applies_to_own_tools() -> None:
    script = scripted([Call("slow", {}, "c1")], ["Too slow, sorry."])
    fa: Agent[Any, Any] = Agent(script.model())

    @fa.tool_plain
    async def slow() -> str:
        """Take forever."""
        await asyncio.sleep(60)
        return "late"

    agent = from_pydantic_ai(fa, name="assistant")
    result = await run_once(agent, tool_timeout=0.2)
    assert result.status is RunStatus.SUCCEEDED, result.error
    completed = next(e for e in result.events if e.type == "tool_completed")
    assert completed.status is ToolStatus.TIMEOUT
    assert "timed out" in script.sent_text(1)


async def test_around_tool_middleware_sees_engine_and_own_tools() -> None:
    seen: list[str] = []
    script = scripted(
        [Call("forecast", {"city": "Rome"}, "c1"), Call("double", {"x": 2}, "c2")], ["ok"]
    )
    agent = from_pydantic_ai(framework_agent(script), name="assistant", tools=["forecast"])
    result = await run_once(agent, extra=[MiddlewarePlugin(seen)])
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert sorted(seen) == ["double", "forecast"]
    by_tool = {e.tool: e for e in result.events if e.type == "tool_completed"}
    assert by_tool["forecast"].status is ToolStatus.OK
    assert by_tool["double"].status is ToolStatus.ERROR
    assert "not allowed" in (by_tool["double"].error or "")


@pytest.mark.parametrize("pattern", ["math.*", "math.add"])
async def test_dotted_tool_names_are_mapped_for_the_model_and_back(pattern: str) -> None:
    script = scripted([Call("math__add", {"a": 40, "b": 2}, "c1")], ["42"])
    agent = from_pydantic_ai(framework_agent(script), name="assistant", tools=[pattern])
    result = await run_once(agent)
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert script.tool_names() == ["double", "math__add", "picky"]
    assert shape(result)[1:3] == [
        ("tool_executing", "math.add", {"a": 40, "b": 2}),
        ("tool_completed", "math.add", "ok"),
    ]


async def test_parallel_calls_complete_in_any_order_each_keyed_by_its_id() -> None:
    fast_done = asyncio.Event()
    script = scripted([Call("slow_one", {}, "c1"), Call("fast_one", {}, "c2")], ["both done"])
    fa: Agent[Any, Any] = Agent(script.model())

    @fa.tool_plain
    async def slow_one() -> str:
        """Finishes after fast_one (so the calls must run at the same time)."""
        await asyncio.wait_for(fast_done.wait(), 10)
        return "slow"

    @fa.tool_plain
    async def fast_one() -> str:
        """Finishes at once."""
        fast_done.set()
        return "fast"

    agent = from_pydantic_ai(fa, name="assistant")
    result = await run_once(agent)
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert shape(result)[1:5] == [
        ("tool_executing", "slow_one", {}),
        ("tool_executing", "fast_one", {}),
        ("tool_completed", "fast_one", "ok"),
        ("tool_completed", "slow_one", "ok"),
    ]
    pairs_keyed_by_call_id(result)
