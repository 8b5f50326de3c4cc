"""The errors agentengine raises.

Every error derives from one base, so ``except AgentEngineError`` catches them all::

    AgentEngineError
    ├── InvalidContextError      (also a ValueError)  a context with a missing or placeholder id
    ├── UnknownAgentError        (also a LookupError) no agent registered under that name
    ├── ToolError                                     a tool call failed, timed out or got bad args
    ├── EngineLimitError                              too many engines for one user
    ├── EngineClosedError                             the engine or factory was cleaned up
    ├── PluginLoadError                               a plugin failed to load (strict mode)
    ├── RegistrationError        (also a ValueError)  a duplicate agent/tool name, a bad tool
    └── ConfigError              (also a ValueError)  a bad configuration file or variable

Each message says what was wrong and what to do about it.
"""

from __future__ import annotations

__all__ = [
    "AgentEngineError",
    "ConfigError",
    "EngineClosedError",
    "EngineLimitError",
    "InvalidContextError",
    "PluginLoadError",
    "RegistrationError",
    "ToolError",
    "UnknownAgentError",
]


class AgentEngineError(Exception):
    """Base class of every error agentengine raises."""


class InvalidContextError(AgentEngineError, ValueError):
    """A ``UserExecutionContext`` was given an empty, blank or placeholder value."""


class UnknownAgentError(AgentEngineError, LookupError):
    """No agent is registered under the requested name."""

    def __init__(self, name: str, available: list[str]) -> None:
        self.name = name
        self.available = sorted(available)
        names = ", ".join(self.available) or "none"
        super().__init__(
            f"no agent named {name!r} is registered; available agents: {names}. "
            "Register it with a plugin's agentengine_register_agents hook."
        )

    def __reduce__(self) -> tuple[type[UnknownAgentError], tuple[str, list[str]]]:
        return (type(self), (self.name, self.available))


class ToolError(AgentEngineError):
    """A tool call did not produce a result.

    Raised by ``RunContext.call_tool`` after the failure was reported in the ``tool_completed``
    event; ``message`` is the same text that event carried in ``error``.
    """

    def __init__(self, tool: str, status: str, message: str, tool_call_id: str = "") -> None:
        self.tool = tool
        self.status = status
        self.message = message
        self.tool_call_id = tool_call_id
        super().__init__(f"tool {tool!r} {status}: {message}")

    def __reduce__(self) -> tuple[type[ToolError], tuple[str, str, str, str]]:
        return (type(self), (self.tool, self.status, self.message, self.tool_call_id))


class EngineLimitError(AgentEngineError):
    """A user already has the maximum number of live engines."""


class EngineClosedError(AgentEngineError):
    """The engine (or its factory) was cleaned up and cannot be used again."""


class PluginLoadError(AgentEngineError):
    """A plugin could not be loaded or registered (raised in strict mode)."""


class RegistrationError(AgentEngineError, ValueError):
    """A plugin contributed something invalid: a duplicate name or a malformed tool/agent."""


class ConfigError(AgentEngineError, ValueError):
    """The configuration (file or environment) is invalid."""
