"""agentengine: run AI agents for many users at once, safely.

One ``UserExecutionEngine`` per user request, created only by one ``ExecutionEngineFactory``;
every variant (tools, MCP servers, request-scoped resources, event transports, permissions,
retries) is a plugin layered onto it. This module is the public API.
"""

from typing import TYPE_CHECKING

from agentengine.lazy import lazy_exports

if TYPE_CHECKING:
    from agentengine.agents import Agent, AgentRegistry, agent
    from agentengine.config import EngineSettings, Settings, load_settings
    from agentengine.context import UserExecutionContext
    from agentengine.engine import (
        PipelineStep,
        RunContext,
        RunHandle,
        RunResult,
        UserExecutionEngine,
    )
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
        wire_size,
    )
    from agentengine.extensions import Extension, ToolCall
    from agentengine.factory import (
        ExecutionEngineFactory,
        configure_execution_engine_factory,
        get_execution_engine_factory,
        reset_execution_engine_factory,
    )
    from agentengine.hookspecs import hookimpl, hookspec
    from agentengine.plugins import PluginInfo
    from agentengine.scope import RequestScope, ResourceRegistry
    from agentengine.sinks import EventGap, EventSink, InMemoryEventSink, StreamItem
    from agentengine.tools import FunctionTool, Tool, ToolRegistry, tool

# The public names are imported on first use (PEP 562), so that ``import agentengine`` (and
# the command line, and a plugin module importing ``hookimpl``) does not pay for pydantic
# models it does not need: ``agentengine check`` runs in pre-commit hooks on a few files.
_EXPORTS: dict[str, str] = {
    "Agent": "agentengine.agents",
    "AgentCompletedEvent": "agentengine.events",
    "AgentEngineError": "agentengine.errors",
    "AgentErrorEvent": "agentengine.events",
    "AgentEvent": "agentengine.events",
    "AgentRegistry": "agentengine.agents",
    "AgentStartedEvent": "agentengine.events",
    "AgentThinkingEvent": "agentengine.events",
    "BaseEvent": "agentengine.events",
    "ConfigError": "agentengine.errors",
    "EngineClosedError": "agentengine.errors",
    "EngineLimitError": "agentengine.errors",
    "EngineSettings": "agentengine.config",
    "EventGap": "agentengine.sinks",
    "EventSink": "agentengine.sinks",
    "ExecutionEngineFactory": "agentengine.factory",
    "Extension": "agentengine.extensions",
    "FunctionTool": "agentengine.tools",
    "InMemoryEventSink": "agentengine.sinks",
    "InvalidContextError": "agentengine.errors",
    "PipelineStep": "agentengine.engine",
    "PluginInfo": "agentengine.plugins",
    "PluginLoadError": "agentengine.errors",
    "RegistrationError": "agentengine.errors",
    "RequestScope": "agentengine.scope",
    "ResourceRegistry": "agentengine.scope",
    "RunContext": "agentengine.engine",
    "RunHandle": "agentengine.engine",
    "RunResult": "agentengine.engine",
    "RunStatus": "agentengine.events",
    "ScopedResourceError": "agentengine.errors",
    "Settings": "agentengine.config",
    "StreamItem": "agentengine.sinks",
    "Tool": "agentengine.tools",
    "ToolArgumentError": "agentengine.errors",
    "ToolCall": "agentengine.extensions",
    "ToolCompletedEvent": "agentengine.events",
    "ToolError": "agentengine.errors",
    "ToolExecutingEvent": "agentengine.events",
    "ToolRegistry": "agentengine.tools",
    "ToolStatus": "agentengine.events",
    "UnknownAgentError": "agentengine.errors",
    "UnknownResourceError": "agentengine.errors",
    "UserExecutionContext": "agentengine.context",
    "UserExecutionEngine": "agentengine.engine",
    "agent": "agentengine.agents",
    "configure_execution_engine_factory": "agentengine.factory",
    "get_execution_engine_factory": "agentengine.factory",
    "hookimpl": "agentengine.hookspecs",
    "hookspec": "agentengine.hookspecs",
    "load_settings": "agentengine.config",
    "parse_event": "agentengine.events",
    "reset_execution_engine_factory": "agentengine.factory",
    "tool": "agentengine.tools",
    "wire_size": "agentengine.events",
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
    "StreamItem",
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
    "wire_size",
]
