"""``FrameworkAgent``: the base of the agentengine agents the framework adapters make."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from agentengine.definitions.agents import Agent
from agentengine.frameworks.tools import check_registered

if TYPE_CHECKING:
    from agentengine.definitions.tools import ToolRegistry

__all__ = ["FrameworkAgent"]

_Adapted = TypeVar("_Adapted", bound="FrameworkAgent")


class FrameworkAgent(Agent):
    """An agentengine agent running a framework's agent.

    ``framework_agent`` is the framework's agent, ``tool_patterns`` the ``tools=`` given.
    ``check_tools`` (called by the factory once every plugin registered its tools) refuses
    names and globs that can only mean registered tools and match none.
    """

    framework_agent: Any
    tool_patterns: tuple[str, ...]

    def check_tools(self, tools: ToolRegistry) -> None:
        """Raise ``RegistrationError`` naming every pattern of ``tools=`` that matches no
        registered tool and cannot name a per-user (MCP, dotted) tool."""
        check_registered(self.name, self.tool_patterns, tools.names())

    @classmethod
    def adapt(
        cls: type[_Adapted],
        run: Callable[..., Awaitable[Any]],
        *,
        name: str,
        description: str,
        framework_agent: Any,
        tool_patterns: tuple[str, ...],
    ) -> _Adapted:
        """The agentengine agent running ``framework_agent`` with ``run`` (the adapter's
        ``async def (run, message, history=None)``: its signature is the agent's input)."""
        adapted = cls(run, name=name, description=description)
        adapted.framework_agent = framework_agent
        adapted.tool_patterns = tool_patterns
        return adapted
