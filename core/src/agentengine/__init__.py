"""agentengine: run AI agents for many users at once, safely.

One ``UserExecutionEngine`` per user request, created only by one ``ExecutionEngineFactory``;
every variant (tools, MCP servers, request-scoped resources, event transports, permissions,
retries) is a plugin layered onto it. This module is the public API.
"""

from typing import TYPE_CHECKING

from agentengine.lazy import lazy_exports

if TYPE_CHECKING:
    from agentengine.config import EngineSettings, Settings, load_settings
    from agentengine.context import UserExecutionContext
    from agentengine.definitions.agents import Agent, AgentRegistry, agent
    from agentengine.definitions.resources import ResourceRegistry
    from agentengine.definitions.run import RunContext
    from agentengine.definitions.tools import FunctionTool, Tool, ToolRegistry, tool
    from agentengine.errors import (
        AgentEngineError,
        ConfigError,
        EngineClosedError,
        EngineLimitError,
        InvalidContextError,
        PluginLoadError,
        RegistrationError,
        ScopedResourceError,
        ToolArgumentError,
        ToolError,
        UnknownAgentError,
        UnknownResourceError,
    )
    from agentengine.events import (
        AgentCompletedEvent,
        AgentErrorEvent,
        AgentEvent,
        AgentStartedEvent,
        AgentThinkingEvent,
        BaseEvent,
        RunStatus,
        ToolCompletedEvent,
        ToolExecutingEvent,
        ToolStatus,
        parse_event,
    )
    from agentengine.plugins.extensions import Extension, ToolCall
    from agentengine.plugins.hooks import hookimpl, hookspec
    from agentengine.plugins.loading import PluginInfo
    from agentengine.request_scope import RequestScope
    from agentengine.runtime.engine import (
        PipelineStep,
        RunHandle,
        RunResult,
        UserExecutionEngine,
    )
    from agentengine.runtime.factory import (
        ExecutionEngineFactory,
        configure_execution_engine_factory,
        get_execution_engine_factory,
        reset_execution_engine_factory,
    )
    from agentengine.sinks.memory import InMemoryEventSink
    from agentengine.sinks.protocol import EventGap, EventSink

# The public names are imported on first use (PEP 562), so that ``import agentengine`` (and
# the command line, and a plugin module importing ``hookimpl``) does not pay for pydantic
# models it does not need: ``agentengine check`` runs in pre-commit hooks on a few files.
_EXPORTS: dict[str, str] = {
    "Agent": "agentengine.definitions.agents",
    "AgentCompletedEvent": "agentengine.events",
    "AgentEngineError": "agentengine.errors",
    "AgentErrorEvent": "agentengine.events",
    "AgentEvent": "agentengine.events",
    "AgentRegistry": "agentengine.definitions.agents",
    "AgentStartedEvent": "agentengine.events",
    "AgentThinkingEvent": "agentengine.events",
    "BaseEvent": "agentengine.events",
    "ConfigError": "agentengine.errors",
    "EngineClosedError": "agentengine.errors",
    "EngineLimitError": "agentengine.errors",
    "EngineSettings": "agentengine.config",
    "EventGap": "agentengine.sinks.protocol",
    "EventSink": "agentengine.sinks.protocol",
    "ExecutionEngineFactory": "agentengine.runtime.factory",
    "Extension": "agentengine.plugins.extensions",
    "FunctionTool": "agentengine.definitions.tools",
    "InMemoryEventSink": "agentengine.sinks.memory",
    "InvalidContextError": "agentengine.errors",
    "PipelineStep": "agentengine.runtime.engine",
    "PluginInfo": "agentengine.plugins.loading",
    "PluginLoadError": "agentengine.errors",
    "RegistrationError": "agentengine.errors",
    "RequestScope": "agentengine.request_scope",
    "ResourceRegistry": "agentengine.definitions.resources",
    "RunContext": "agentengine.definitions.run",
    "RunHandle": "agentengine.runtime.engine",
    "RunResult": "agentengine.runtime.engine",
    "RunStatus": "agentengine.events",
    "ScopedResourceError": "agentengine.errors",
    "Settings": "agentengine.config",
    "Tool": "agentengine.definitions.tools",
    "ToolArgumentError": "agentengine.errors",
    "ToolCall": "agentengine.plugins.extensions",
    "ToolCompletedEvent": "agentengine.events",
    "ToolError": "agentengine.errors",
    "ToolExecutingEvent": "agentengine.events",
    "ToolRegistry": "agentengine.definitions.tools",
    "ToolStatus": "agentengine.events",
    "UnknownAgentError": "agentengine.errors",
    "UnknownResourceError": "agentengine.errors",
    "UserExecutionContext": "agentengine.context",
    "UserExecutionEngine": "agentengine.runtime.engine",
    "agent": "agentengine.definitions.agents",
    "configure_execution_engine_factory": "agentengine.runtime.factory",
    "get_execution_engine_factory": "agentengine.runtime.factory",
    "hookimpl": "agentengine.plugins.hooks",
    "hookspec": "agentengine.plugins.hooks",
    "load_settings": "agentengine.config",
    "parse_event": "agentengine.events",
    "reset_execution_engine_factory": "agentengine.runtime.factory",
    "tool": "agentengine.definitions.tools",
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "AgentCompletedEvent",
    "AgentEngineError",
    "AgentErrorEvent",
    "AgentEvent",
    "AgentRegistry",
    "AgentStartedEvent",
    "AgentThinkingEvent",
    "BaseEvent",
    "ConfigError",
    "EngineClosedError",
    "EngineLimitError",
    "EngineSettings",
    "EventGap",
    "EventSink",
    "ExecutionEngineFactory",
    "Extension",
    "FunctionTool",
    "InMemoryEventSink",
    "InvalidContextError",
    "PipelineStep",
    "PluginInfo",
    "PluginLoadError",
    "RegistrationError",
    "RequestScope",
    "ResourceRegistry",
    "RunContext",
    "RunHandle",
    "RunResult",
    "RunStatus",
    "ScopedResourceError",
    "Settings",
    "Tool",
    "ToolArgumentError",
    "ToolCall",
    "ToolCompletedEvent",
    "ToolError",
    "ToolExecutingEvent",
    "ToolRegistry",
    "ToolStatus",
    "UnknownAgentError",
    "UnknownResourceError",
    "UserExecutionContext",
    "UserExecutionEngine",
    "__version__",
    "agent",
    "configure_execution_engine_factory",
    "get_execution_engine_factory",
    "hookimpl",
    "hookspec",
    "load_settings",
    "parse_event",
    "reset_execution_engine_factory",
    "tool",
]
