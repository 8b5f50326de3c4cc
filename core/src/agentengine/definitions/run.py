"""``RunContext``: what an agent, a tool taking it, and middleware see of a run.

This is the interface, defined here so that agents, tools and extensions can name it without
importing the runtime; the engine's runs implement it (``agentengine.runtime.engine``). Only
the engine makes runs: an agent receives its ``RunContext`` as its first argument.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import asyncio

    from agentengine.context import UserExecutionContext
    from agentengine.events import BaseEvent

__all__ = ["RunAgent", "RunContext"]


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

    async def think(self, text: str) -> None:
        """Report progress: emits ``agent_thinking``."""
        raise NotImplementedError

    async def call_tool(self, name: str, args: Mapping[str, Any] | None = None) -> Any:
        """Call a tool: emits ``tool_executing`` then ``tool_completed`` and returns the result.

        Raises ``ToolError`` (after ``tool_completed`` reported the failure) when the tool is
        unknown, the arguments are invalid, the tool raised or it timed out.
        """
        raise NotImplementedError
