"""Extensions: the per-engine, per-run side of a plugin.

A plugin's ``agentengine_engine_extensions`` hook returns objects with any of these optional
methods (duck-typed; ``Extension`` is a convenience base with no-op defaults):

``async start()``
    when the engine is created (in order of registration);
``async close()``
    when the engine is cleaned up (in reverse order), given ``[engine] close_timeout``
    seconds; whatever it raises is logged with the plugin's name, never raised;
``async around_run(run, call_next)``
    middleware around a whole run: ``return await call_next()`` runs the rest of the chain
    and the agent; may inspect ``run``, refuse (raise) or retry;
``async around_tool(run, call, call_next)``
    middleware around one tool call: ``return await call_next(call)``; ``call`` is a
    ``ToolCall`` (tool, tool_call_id, args);
``tools()``
    tools only this user's engine has (e.g. an MCP server's, with this user's session);
``async resolve_tool(name)``
    a tool looked up by name at call time, or None;
``on_event(event)``
    an observer of every event of the engine's runs. One that raises (anything, a
    ``CancelledError`` included) is logged with its plugin's name and skipped: observers never
    break a run or each other.

Whatever the other methods raise (``SystemExit`` and ``KeyboardInterrupt`` included) fails at
most that tool call, run or engine creation, never the process; see "Failure semantics" in
docs/architecture.md.

The engine composes these once, at creation, into call chains: a run pays no hook lookup.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentengine.engine import RunContext
    from agentengine.events import BaseEvent
    from agentengine.tools import Tool

__all__ = ["Extension", "ToolCall"]


@dataclass(slots=True)
class ToolCall:
    """One tool call as it passes through ``around_tool`` middleware."""

    tool: Tool
    tool_call_id: str
    args: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The tool's name."""
        return self.tool.name


class Extension:
    """Optional base class for extensions; override what you need."""

    #: The plugin's name, set by the engine (used in log lines about this extension).
    plugin_name: str | None = None

    async def start(self) -> None:
        """Called when the engine is created."""

    async def close(self) -> None:
        """Called when the engine is cleaned up."""

    async def around_run(self, run: RunContext, call_next: Callable[[], Awaitable[Any]]) -> Any:
        """Wrap a run."""
        return await call_next()

    async def around_tool(
        self,
        run: RunContext,
        call: ToolCall,
        call_next: Callable[[ToolCall], Awaitable[Any]],
    ) -> Any:
        """Wrap a tool call."""
        return await call_next(call)

    def tools(self) -> Iterable[Tool]:
        """Tools for this engine only."""
        return ()

    async def resolve_tool(self, name: str) -> Tool | None:
        """A tool looked up at call time."""
        return None

    def on_event(self, event: BaseEvent) -> None:
        """Observe an event."""
