"""The overhead of running an OpenAI Agents SDK agent through agentengine, in one process, one run.

The same SDK agent and scripted model (a ``Model`` replaying the SDK's own normalized stream
events, built once with ``agents.testing``; no network, tracing off): a run that streams a
little text, makes two tool calls in one model turn, then streams the answer. Timed:

* direct: ``Runner.run_streamed(agent, ...)`` with ``stream_events()`` consumed to its end (the
  streaming run the adapter itself makes);
* through agentengine: ``engine.execute_agent`` of ``from_openai_agents(agent)`` (events built,
  published to the in-memory sink, each tool call through ``run.call_tool``), with the two
  tools as the SDK agent's own function tools, and again as agentengine tools (``tools=``).

Printed: microseconds per run and the ratios agentengine / direct streaming. Target <= 1.2x.

    uv run python bench/openai_agents_overhead.py [--runs 300]
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from typing import Any

from _framework_bench import double_impl, forecast_impl, measure, report
from agentengine_openai_agents import from_openai_agents
from agents import Agent, ModelResponse, RunConfig, Runner, function_tool
from agents.models.interface import Model
from agents.testing import ModelStep, assistant_message, function_call
from agents.testing.model import _stream_events_for_step

RUN_CONFIG = RunConfig(tracing_disabled=True)


def _events(*items: Any) -> list[Any]:
    return _stream_events_for_step(ModelStep(output=list(items)), preserve_raw_usage=False)


class Replay(Model):
    """Turn one: text and two tool calls; turn two (tool results in the input): the answer."""

    FIRST = _events(
        assistant_message("Let me look that up. "),
        function_call("forecast", {"city": "Paris"}, call_id="a"),
        function_call("double", {"x": 21}, call_id="b"),
    )
    SECOND = _events(assistant_message("It is sunny in Paris, and 21 doubled is 42."))

    @staticmethod
    def _second(items: Any) -> bool:
        return isinstance(items, list) and any(
            isinstance(i, dict) and i.get("type") == "function_call_output" for i in items
        )

    async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
        raise NotImplementedError("the bench streams")

    async def stream_response(  # type: ignore[override]
        self, system_instructions: Any, items: Any, *args: Any, **kwargs: Any
    ) -> AsyncIterator[Any]:
        # Called positionally by the SDK's run loop (instructions, input, settings, ...).
        for event in self.SECOND if self._second(items) else self.FIRST:
            yield event


def framework(own_tools: bool) -> Agent[Any]:
    tools = (
        [
            function_tool(forecast_impl, name_override="forecast"),
            function_tool(double_impl, name_override="double"),
        ]
        if own_tools
        else []
    )
    return Agent(name="bench", model=Replay(), tools=tools)


async def main(runs: int) -> dict[str, float]:
    direct_agent = framework(own_tools=True)

    async def direct_stream() -> Any:
        result = Runner.run_streamed(direct_agent, "weather?", run_config=RUN_CONFIG)
        async for _event in result.stream_events():
            pass
        return result.final_output

    assert "42" in await direct_stream()
    own = from_openai_agents(framework(own_tools=True), name="own", run_config=RUN_CONFIG)
    engine_tools = from_openai_agents(
        framework(own_tools=False),
        name="engine_tools",
        tools=["forecast", "double"],
        run_config=RUN_CONFIG,
    )
    return await measure(runs, direct_stream, own, engine_tools)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report(asyncio.run(main(args.runs)), "direct Runner.run_streamed():", args.json)
