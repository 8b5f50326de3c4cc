"""``from_pydantic_ai``: a pydantic-ai ``Agent`` as an agentengine agent.

Each run of the agentengine agent runs the framework agent once with ``run_stream_events()``
and maps what it streams onto the run's events:

===========================================  ==============================================
pydantic-ai                                   agentengine
===========================================  ==============================================
``TextPart`` start / ``TextPartDelta``        ``agent_thinking`` (batched, see ``thinking_window``)
``ThinkingPart`` / ``ThinkingPartDelta``      ``agent_thinking`` with ``reasoning`` true
a function tool call (``FunctionToolCallEvent``  ``tool_executing`` then ``tool_completed``, from
then ``FunctionToolResultEvent``)             the engine's own call (``run.call_tool``)
``AgentRunResultEvent``                       the run's output (``agent_completed``)
an exception (model error, usage limits ...)  ``agent_error`` then ``agent_completed`` failed
===========================================  ==============================================

Tool calls are not copied from the framework's events: every call goes through the engine
(``agentengine_pydantic_ai.tools``), which emits the pair; the stream's own tool events only fill
in a call pydantic-ai settled without running anything (an unknown tool name, a call skipped
after the final result), so that each call has exactly one pair.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from agentengine import RunContext
from agentengine.frameworks.agents import FrameworkAgent
from agentengine.frameworks.batching import DEFAULT_THINKING_WINDOW, ThinkingBatcher, check_window
from agentengine.frameworks.history import ChatMessage, json_output
from agentengine.frameworks.tools import check_patterns
from pydantic_ai.messages import (
    FunctionToolCallEvent,
    FunctionToolResultEvent,
    ModelRequest,
    ModelResponse,
    PartDeltaEvent,
    PartEndEvent,
    PartStartEvent,
    TextPart,
    TextPartDelta,
    ThinkingPart,
    ThinkingPartDelta,
    UserPromptPart,
)
from pydantic_ai.run import AgentRunResultEvent

from agentengine_pydantic_ai.names import ToolNames
from agentengine_pydantic_ai.tools import (
    EngineCapability,
    EngineToolset,
    call_args,
    refuse_call,
    resolve_tools,
)

if TYPE_CHECKING:
    from pydantic_ai import Agent as PydanticAgent
    from pydantic_ai.messages import ModelMessage
    from pydantic_ai.usage import UsageLimits

__all__ = ["ChatMessage", "PydanticAIAgent", "from_pydantic_ai"]


def _history(messages: Sequence[ChatMessage]) -> list[ModelMessage]:
    out: list[ModelMessage] = []
    for m in messages:
        if m.role == "user":
            out.append(ModelRequest(parts=[UserPromptPart(content=m.content)]))
        else:
            out.append(ModelResponse(parts=[TextPart(content=m.content)]))
    return out


class PydanticAIAgent(FrameworkAgent):
    """The agentengine agent made by ``from_pydantic_ai``.

    ``framework_agent`` is the pydantic-ai agent, ``tool_patterns`` the ``tools=`` given.
    ``check_tools`` (called by the factory once every plugin registered its tools) refuses
    names and globs that can only mean registered tools and match none.
    """

    framework_agent: PydanticAgent[Any, Any]


def from_pydantic_ai(
    agent: PydanticAgent[Any, Any],
    *,
    name: str,
    tools: Sequence[str] | None = None,
    description: str | None = None,
    usage_limits: UsageLimits | None = None,
    model_settings: Mapping[str, Any] | None = None,
    deps: Any = None,
    thinking_window: float = DEFAULT_THINKING_WINDOW,
) -> PydanticAIAgent:
    """An agentengine agent that runs the pydantic-ai ``agent``.

    Add it in ``agentengine_register_agents``: ``registry.add(from_pydantic_ai(my_agent,
    name="assistant", tools=["forecast", "time.*"]))``.

    Input: ``message`` (the user's message) and optionally ``history`` (earlier messages of
    the conversation, ``[{"role": "user" | "assistant", "content": str}, ...]``). Output: the
    framework agent's output as JSON data.

    ``tools``: agentengine tools the model may call, by name or ``fnmatch`` glob; registered
    tools (checked when the factory starts) and this user's MCP tools (``time.*``, checked when
    a run starts: an ``agent_error``, then a failed run). Their calls, and those of the
    framework agent's own tools, go through the engine (events, validation, middleware,
    timeouts). Names the model API refuses are mapped (``agentengine_pydantic_ai.names``).
    ``description``: shown in listings (default: the agent's ``description``, or none).
    ``usage_limits``, ``model_settings``, ``deps``: passed to each framework run.
    ``thinking_window``: seconds of streamed text batched into one ``agent_thinking`` event
    (0: one event per streamed piece).
    """
    check_window(name, thinking_window)
    patterns = check_patterns(name, tools or ())
    settings = dict(model_settings) if model_settings is not None else None
    framework = agent

    async def run_pydantic_ai(
        run: RunContext, message: str, history: list[ChatMessage] | None = None
    ) -> Any:
        engine_tools = await resolve_tools(run, patterns)
        names = ToolNames(engine_tools)
        capability = EngineCapability(run, names)
        toolsets = [EngineToolset(run, engine_tools, names)] if engine_tools else None
        thinking = ThinkingBatcher(run, thinking_window)
        mapper = _StreamMapper(run, thinking, capability)
        async with framework.run_stream_events(
            message,
            message_history=_history(history) if history else None,
            toolsets=toolsets,
            capabilities=[capability],
            usage_limits=usage_limits,
            model_settings=settings,  # type: ignore[arg-type]
            deps=deps,
        ) as stream:
            try:
                async for event in stream:
                    await mapper.handle(event)
            except asyncio.CancelledError:
                stream.cancel()  # the framework's own cancellation, then asyncio's
                raise
        await thinking.flush()
        return json_output(mapper.output)

    return PydanticAIAgent.adapt(
        run_pydantic_ai,
        name=name,
        description=description if description is not None else (agent.description or ""),
        framework_agent=agent,
        tool_patterns=patterns,
    )


class _StreamMapper:
    """Maps one run's stream of pydantic-ai events onto the run (see the module docs)."""

    __slots__ = ("_calls", "_capability", "_run", "output", "thinking")

    def __init__(
        self, run: RunContext, thinking: ThinkingBatcher, capability: EngineCapability
    ) -> None:
        self._run = run
        self.thinking = thinking
        self._capability = capability
        self._calls: dict[str, Any] = {}
        self.output: Any = None

    async def handle(self, event: Any) -> None:
        """Map one streamed event."""
        thinking = self.thinking
        if isinstance(event, PartDeltaEvent):
            delta = event.delta
            if isinstance(delta, TextPartDelta):
                await thinking.add(delta.content_delta, reasoning=False)
            elif isinstance(delta, ThinkingPartDelta):
                await thinking.add(delta.content_delta, reasoning=True)
        elif isinstance(event, PartStartEvent):
            part = event.part
            if isinstance(part, TextPart):
                await thinking.add(part.content, reasoning=False)
            elif isinstance(part, ThinkingPart):
                await thinking.add(part.content, reasoning=True)
        elif isinstance(event, PartEndEvent):
            await thinking.flush()
        elif isinstance(event, FunctionToolCallEvent):
            await thinking.flush()
            self._calls[event.tool_call_id] = event.part
        elif isinstance(event, FunctionToolResultEvent):
            await self._settled(event)
        elif isinstance(event, AgentRunResultEvent):
            await thinking.flush()
            self.output = event.result.output

    async def _settled(self, event: Any) -> None:
        call = self._calls.pop(event.tool_call_id, None)
        reported = self._capability.reported
        if event.tool_call_id in reported:
            reported.discard(event.tool_call_id)
            return
        # Settled without running (an unknown tool name, a call skipped after the final
        # result): the engine still reports the call, with pydantic-ai's reason.
        part = event.part
        reason = part.model_response_str() if hasattr(part, "model_response_str") else str(part)
        name = self._capability.engine_name(part.tool_name or (call.tool_name if call else ""))
        await refuse_call(self._run, name, call_args(call) if call is not None else {}, reason)
