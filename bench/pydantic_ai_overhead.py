"""The overhead of running a pydantic-ai agent through agentengine, in one process, one run.

The same pydantic-ai agent and scripted model (``FunctionModel``, no network): a run that
streams a little text, makes two tool calls in one model turn, then streams the answer. Timed:

* direct: ``agent.run_stream_events(...)`` consumed to its end (the streaming run the adapter
  itself makes; the scripted model streams, as a real provider's does);
* through agentengine: ``engine.execute_agent`` of ``from_pydantic_ai(agent)`` (events built,
  published to the in-memory sink, each tool call through ``run.call_tool``), with the two
  tools as the framework agent's own tools, and again as agentengine tools (``tools=``).

Printed: microseconds per run and the ratios agentengine / direct streaming. Target <= 1.2x.

    uv run python bench/pydantic_ai_overhead.py [--runs 500]
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from typing import Any

from _framework_bench import double_impl, forecast_impl, measure, report
from agentengine_pydantic_ai import from_pydantic_ai
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, DeltaToolCall, FunctionModel


async def script(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[Any]:
    if not any(isinstance(p, ToolReturnPart) for p in messages[-1].parts):
        yield "Let me look that up. "
        yield {1: DeltaToolCall(name="forecast", json_args='{"city": "Paris"}', tool_call_id="a")}
        yield {2: DeltaToolCall(name="double", json_args='{"x": 21}', tool_call_id="b")}
        return
    yield "It is sunny in Paris, "
    yield "and 21 doubled is 42."


def framework(own_tools: bool) -> Agent[None, str]:
    agent: Agent[None, str] = Agent(FunctionModel(stream_function=script))
    if own_tools:
        agent.tool_plain(forecast_impl, name="forecast")
        agent.tool_plain(double_impl, name="double")
    return agent


async def main(runs: int) -> dict[str, float]:
    direct_agent = framework(own_tools=True)

    async def direct_stream() -> Any:
        async with direct_agent.run_stream_events("weather?") as stream:
            async for event in stream:
                last = event
        return last

    own = from_pydantic_ai(framework(own_tools=True), name="own")
    engine_tools = from_pydantic_ai(
        framework(own_tools=False), name="engine_tools", tools=["forecast", "double"]
    )
    return await measure(runs, direct_stream, own, engine_tools)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report(asyncio.run(main(args.runs)), "direct run_stream_events():", args.json)
