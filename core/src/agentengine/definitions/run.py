"""``RunContext``: what an agent, a tool taking it, and middleware see of a run.

This is the interface, defined here so that agents, tools and extensions can name it without
importing the runtime; the engine's runs implement it (``agentengine.runtime.engine``). Only
the engine makes runs: an agent receives its ``RunContext`` as its first argument.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import asyncio

    from agentengine.context import UserExecutionContext
    from agentengine.events import BaseEvent

__all__ = ["RunAgent", "RunContext", "RunTool"]


class RunAgent(Protocol):
    """What a run knows of its agent (an ``Agent``; typed structurally here because agents
    are defined in terms of runs, not the other way round)."""

    @property
    def name(self) -> str:
        """The agent's name."""
        ...

    @property
    def description(self) -> str:
        """Its description."""
        ...

    @property
    def func(self) -> Callable[..., Awaitable[Any]]:
        """The agent's function: ``await func(run, **input)``."""
        ...

    def describe(self) -> dict[str, Any]:
        """Name, description and input schema."""
        ...


class RunTool(Protocol):
    """What a run knows of a tool (a ``Tool``; typed structurally here because tools are
    defined in terms of runs, not the other way round)."""

    @property
    def name(self) -> str:
        """The tool's name."""
        ...

    @property
    def timeout(self) -> float | None:
        """Its own timeout in seconds, or None for the engine's ``tool_timeout``."""
        ...

    def validate_args(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """Check ``args``; return them as ``invoke`` will receive them."""
        ...

    async def invoke(self, run: RunContext, args: dict[str, Any]) -> Any:
        """Run the tool with validated ``args``."""
        ...


class RunContext:
    """What an agent (and a tool taking a ``RunContext`` parameter) sees of its run.

    Attributes: ``run_id``; ``agent`` (the ``Agent`` running); ``input`` (the validated
    input); ``timeout`` (seconds); ``state`` (per-run scratch space for extensions, keyed by
    plugin name by convention); ``scope`` (request-scoped resources: ``await
    run.scope["db"]``); ``task`` (the asyncio task the run executes in).
    """

    __slots__ = ()

    run_id: str
    agent: RunAgent
    input: dict[str, Any]
    timeout: float
    state: dict[str, Any]
    scope: Any
    task: asyncio.Task[Any] | None

    @property
    def context(self) -> UserExecutionContext:
        """The user's context; its ``run_id`` is this run's."""
        raise NotImplementedError

    @property
    def user_id(self) -> str:
        """The user this run belongs to."""
        raise NotImplementedError

    @property
    def thread_id(self) -> str:
        """The conversation thread."""
        raise NotImplementedError

    @property
    def cancel_requested(self) -> bool:
        """True once the engine was asked to cancel this run (``handle.cancel()``, cleanup,
        shutdown): the run then ends ``cancelled`` whatever the agent does."""
        raise NotImplementedError

    @property
    def events(self) -> list[BaseEvent]:
        """The run's events so far (a copy)."""
        raise NotImplementedError

    def tool_names(self) -> list[str]:
        """Names of the tools this run can call by name: the registered tools and the user's
        engine's own (tools that extensions resolve at call time, such as MCP tools, are not
        listed)."""
        raise NotImplementedError

    def get_tool(self, name: str) -> RunTool | None:
        """The tool ``name`` among ``tool_names()``, or None."""
        raise NotImplementedError

    async def list_tools(self) -> Sequence[RunTool]:
        """Every tool this run can call, sorted by name: ``tool_names()``'s and those that
        extensions resolve at call time and can list (``Extension.list_tools``: the user's MCP
        tools, opening the user's sessions as needed). For agents that offer tools to a model."""
        raise NotImplementedError

    async def think(self, text: str, *, reasoning: bool = False) -> None:
        """Report progress: emits ``agent_thinking`` (``reasoning=True`` marks a model's
        reasoning rather than text it says)."""
        raise NotImplementedError

    async def call_tool(
        self, name: str, args: Mapping[str, Any] | None = None, *, tool: RunTool | None = None
    ) -> Any:
        """Call a tool: emits ``tool_executing`` then ``tool_completed`` and returns the result.

        Raises ``ToolError`` (after ``tool_completed`` reported the failure) when the tool is
        unknown, the arguments are invalid, the tool raised or it timed out.

        ``tool``: call this ``Tool`` under ``name`` instead of looking one up (for tools an agent
        brings along, such as a framework agent's own): the call gets the same events, argument
        validation (its ``validate_args``), ``around_tool`` middleware and timeout as a
        registered tool.
        """
        raise NotImplementedError
