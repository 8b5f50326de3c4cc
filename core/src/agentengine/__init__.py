"""agentengine: run AI agents for many users at once, safely.

One ``UserExecutionEngine`` per user request, created only by one ``ExecutionEngineFactory``;
every variant (tools, MCP servers, request-scoped resources, event transports, permissions,
retries) is a plugin layered onto it. This module is the public API.
"""

from agentengine.agents import Agent, AgentRegistry, agent
from agentengine.config import EngineSettings, Settings, load_settings
from agentengine.context import UserExecutionContext
from agentengine.engine import PipelineStep, RunContext, RunHandle, RunResult, UserExecutionEngine
from agentengine.errors import (
    AgentEngineError,
    ConfigError,
    EngineClosedError,
    EngineLimitError,
    InvalidContextError,
    PluginLoadError,
    RegistrationError,
    ToolError,
    UnknownAgentError,
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
from agentengine.extensions import Extension, ToolCall
from agentengine.factory import (
    ExecutionEngineFactory,
    configure_execution_engine_factory,
    get_execution_engine_factory,
    reset_execution_engine_factory,
)
from agentengine.hookspecs import hookimpl, hookspec
from agentengine.plugins import PluginInfo
from agentengine.scope import (
    RequestScope,
    ResourceRegistry,
    ScopedResourceError,
    UnknownResourceError,
)
from agentengine.sinks import EventGap, EventSink, InMemoryEventSink
from agentengine.tools import FunctionTool, Tool, ToolArgumentError, ToolRegistry, tool

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
