"""``from_openai_agents``: an OpenAI Agents SDK ``Agent`` as an agentengine agent.

Each run of the agentengine agent runs the framework agent once with ``Runner.run_streamed``,
reads ``stream_events()`` to its end and maps what it streams onto the run's events:

=============================================  ============================================
OpenAI Agents SDK                              agentengine
=============================================  ============================================
``response.output_text.delta`` (raw event)     ``agent_thinking`` (batched, ``thinking_window``)
``response.reasoning_summary_text.delta``,     ``agent_thinking`` with ``reasoning`` true
``response.reasoning_text.delta``
``tool_called`` item, then ``on_tool_end``     ``tool_executing`` then ``tool_completed``, from
                                               the engine's own call (``run.call_tool``)
a provider-run call's ``tool_called`` item      its pair, the item as result (``report_hosted``)
``response.completed``                         nothing: one per model turn, not the end
the run's ``final_output``                     the run's output (``agent_completed``)
an exception (model error, max turns ...)      ``agent_error`` then ``agent_completed`` failed
=============================================  ============================================

Tool calls are not copied from the SDK's stream: every function tool call goes through the
engine (``agentengine_openai_agents.tools``), which emits its one pair of events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from agentengine import RegistrationError, RunContext
from agentengine.frameworks.agents import FrameworkAgent
from agentengine.frameworks.batching import DEFAULT_THINKING_WINDOW, ThinkingBatcher, check_window
from agentengine.frameworks.history import ChatMessage, json_output
from agentengine.frameworks.names import ToolNames
from agentengine.frameworks.tools import check_patterns, resolve_tools
from agents import Runner
from agents.stream_events import RawResponsesStreamEvent, RunItemStreamEvent

from agentengine_openai_agents.tools import (
    CURRENT_RUN,
    ObservedCalls,
    engine_tools,
    own_tools,
    report_hosted,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from agentengine import Tool
    from agents import Agent as SDKAgent, RunConfig

__all__ = ["ChatMessage", "OpenAIAgentsAgent", "from_openai_agents"]

#: Raw stream events carrying the model's text, and whether it is reasoning.
_TEXT_DELTAS = {
    "response.output_text.delta": False,
    "response.refusal.delta": False,
    "response.reasoning_summary_text.delta": True,
    "response.reasoning_text.delta": True,
}
#: Raw stream events that end a part of the model's output.
_PART_ENDS = frozenset(
    {
        "response.output_item.done",
        "response.content_part.done",
        "response.reasoning_summary_part.done",
        "response.completed",
    }
)


class OpenAIAgentsAgent(FrameworkAgent):
    """The agentengine agent made by ``from_openai_agents``.

    ``framework_agent`` is the SDK agent, ``tool_patterns`` the ``tools=`` given.
    ``check_tools`` (called by the factory once every plugin registered its tools) refuses
    names and globs that can only mean registered tools and match none.
    """

    framework_agent: SDKAgent[Any]


def _input(message: str, history: Sequence[ChatMessage] | None) -> list[Any]:
    items: list[Any] = [{"role": m.role, "content": m.content} for m in history or ()]
    items.append({"role": "user", "content": message})
    return items


def from_openai_agents(
    agent: SDKAgent[Any],
    *,
    name: str,
    tools: Sequence[str] | None = None,
    description: str | None = None,
    context: Any = None,
    max_turns: int | None = None,
    run_config: RunConfig | None = None,
    thinking_window: float = DEFAULT_THINKING_WINDOW,
) -> OpenAIAgentsAgent:
    """An agentengine agent that runs the OpenAI Agents SDK ``agent``.

    Add it in ``agentengine_register_agents``: ``registry.add(from_openai_agents(my_agent,
    name="assistant", tools=["forecast", "time.*"]))``.

    Input: ``message`` (the user's message) and optionally ``history`` (earlier messages of
    the conversation, ``[{"role": "user" | "assistant", "content": str}, ...]``). Output: the
    framework agent's ``final_output`` as JSON data.

    ``tools``: agentengine tools the model may call, by name or ``fnmatch`` glob; registered
    tools (checked when the factory starts) and this user's MCP tools (``time.*``, checked when
    a run starts: an ``agent_error``, then a failed run). Their calls, and those of the
    framework agent's own function tools, go through the engine (events, validation,
    middleware, timeouts). Names the model API refuses are mapped
    (``agentengine.frameworks.names``).
    ``description``: shown in listings (default: the agent's ``handoff_description``, or none).
    ``context``, ``max_turns``, ``run_config``: passed to each ``Runner.run_streamed``.
    ``thinking_window``: seconds of streamed text batched into one ``agent_thinking`` event
    (0: one event per streamed piece).
    """
    check_window(name, thinking_window)
    patterns = check_patterns(name, tools or ())
    if max_turns is not None and (isinstance(max_turns, bool) or max_turns < 1):
        raise RegistrationError(f"agent {name!r}: max_turns must be >= 1, got {max_turns}")
    framework = agent
    agents_for_runs = _RunAgents()
    limits: dict[str, Any] = {"max_turns": max_turns} if max_turns is not None else {}

    async def run_openai_agents(
        run: RunContext, message: str, history: list[ChatMessage] | None = None
    ) -> Any:
        available = await resolve_tools(run, patterns)
        sdk_agent = agents_for_runs.get(framework, available)
        thinking = ThinkingBatcher(run, thinking_window)
        observed = ObservedCalls(run)
        token = CURRENT_RUN.set(run)
        try:  # run_streamed starts the SDK's task, which keeps a copy of CURRENT_RUN
            result = Runner.run_streamed(
                sdk_agent,
                _input(message, history),
                context=context,
                hooks=observed,
                run_config=run_config,
                **limits,
            )
        finally:
            CURRENT_RUN.reset(token)
        try:
            async for event in result.stream_events():
                if isinstance(event, RawResponsesStreamEvent):
                    kind = event.data.type
                    reasoning = _TEXT_DELTAS.get(kind)
                    if reasoning is not None:
                        await thinking.add(getattr(event.data, "delta", None), reasoning)
                    elif kind in _PART_ENDS:
                        await thinking.flush()
                elif isinstance(event, RunItemStreamEvent):
                    # A tool call's events come from the engine's call: what the model said
                    # before it goes out first.
                    await thinking.flush()
                    if event.name == "tool_called":
                        await report_hosted(run, event.item.raw_item)
        except BaseException:  # cancelled, timed out, or failed: the SDK's run ends with it
            await _stop(result)
            raise
        finally:
            await observed.close()
        await thinking.flush()
        return json_output(result.final_output)

    return OpenAIAgentsAgent.adapt(
        run_openai_agents,
        name=name,
        description=description if description is not None else (agent.handoff_description or ""),
        framework_agent=agent,
        tool_patterns=patterns,
    )


class _RunAgents:
    """The copies of the framework agent given to the SDK, one per set of tools, reused by the
    runs that have that set (copying an SDK agent and its tools costs about as much as the
    rest of the adapter's work in a run). The copies' tools hold no run: they read
    ``CURRENT_RUN``. At most ``LIMIT`` sets are kept (MCP tools can differ per user)."""

    LIMIT = 64

    __slots__ = ("_made",)

    def __init__(self) -> None:
        self._made: dict[tuple[Any, ...], SDKAgent[Any]] = {}

    def get(self, framework: SDKAgent[Any], available: Mapping[str, Tool]) -> SDKAgent[Any]:
        """The copy of ``framework`` with its own tools and the agentengine tools
        ``available``, made if needed."""
        key = (
            tuple(id(t) for t in framework.tools),
            *(
                (name, tool.description, json.dumps(tool.input_schema, sort_keys=True))
                for name, tool in available.items()
            ),
        )
        made = self._made.get(key)
        if made is None:
            names = ToolNames(available)
            made = framework.clone(
                tools=[*own_tools(framework.tools), *engine_tools(available, names)]
            )
            if len(self._made) >= self.LIMIT:
                self._made.clear()
            self._made[key] = made
        return made


async def _stop(result: Any) -> None:
    """The SDK's own cancellation, waited for: the tool calls in flight end (``cancelled``)
    before the run's terminal event."""
    result.cancel()
    task = getattr(result, "run_loop_task", None)
    if isinstance(task, asyncio.Task) and not task.done():
        with contextlib.suppress(BaseException):
            await asyncio.wait((task,), timeout=5.0)
