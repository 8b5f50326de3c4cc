"""agentengine: run AI agents for many users at once, safely.

One ``UserExecutionEngine`` per user request, created only by one ``ExecutionEngineFactory``;
every variant (tools, MCP servers, request-scoped resources, event transports, permissions,
retries) is a plugin layered onto it. This module is the public API.
"""

from typing import TYPE_CHECKING

from agentengine.lazy import lazy_exports

if TYPE_CHECKING:
    from agentengine.config import (
        EngineSettings as EngineSettings,
        Settings as Settings,
        load_settings as load_settings,
    )
    from agentengine.context import UserExecutionContext as UserExecutionContext
    from agentengine.definitions.agents import (
        Agent as Agent,
        AgentRegistry as AgentRegistry,
        agent as agent,
        check_run_input as check_run_input,
    )
    from agentengine.definitions.resources import ResourceRegistry as ResourceRegistry
    from agentengine.definitions.run import RunContext as RunContext
    from agentengine.definitions.tools import (
        FunctionTool as FunctionTool,
        Tool as Tool,
        ToolRegistry as ToolRegistry,
        check_arguments as check_arguments,
        tool as tool,
    )
    from agentengine.errors import (
        AgentEngineError as AgentEngineError,
        BackendUnavailableError as BackendUnavailableError,
        ConfigError as ConfigError,
        DrainingError as DrainingError,
        EngineClosedError as EngineClosedError,
        EngineLimitError as EngineLimitError,
        InvalidContextError as InvalidContextError,
        PluginLoadError as PluginLoadError,
        RegistrationError as RegistrationError,
        ScopedResourceError as ScopedResourceError,
        ToolArgumentError as ToolArgumentError,
        ToolError as ToolError,
        UnknownAgentError as UnknownAgentError,
        UnknownResourceError as UnknownResourceError,
    )
    from agentengine.events import (
        AgentCompletedEvent as AgentCompletedEvent,
        AgentErrorEvent as AgentErrorEvent,
        AgentEvent as AgentEvent,
        AgentStartedEvent as AgentStartedEvent,
        AgentThinkingEvent as AgentThinkingEvent,
        BaseEvent as BaseEvent,
        RunStatus as RunStatus,
        ToolCompletedEvent as ToolCompletedEvent,
        ToolExecutingEvent as ToolExecutingEvent,
        ToolStatus as ToolStatus,
        parse_event as parse_event,
        wire_size as wire_size,
    )
    from agentengine.plugins.extensions import Extension as Extension, ToolCall as ToolCall
    from agentengine.plugins.hooks import hookimpl as hookimpl, hookspec as hookspec
    from agentengine.plugins.loading import (
        PluginInfo as PluginInfo,
        load_plugin as load_plugin,
    )
    from agentengine.request_scope import RequestScope as RequestScope
    from agentengine.runtime.drain import (
        DrainingErrorMiddleware as DrainingErrorMiddleware,
        ShutdownDrain as ShutdownDrain,
        drain_on_signal as drain_on_signal,
    )
    from agentengine.runtime.engine import (
        PipelineStep as PipelineStep,
        RunHandle as RunHandle,
        RunResult as RunResult,
        UserExecutionEngine as UserExecutionEngine,
    )
    from agentengine.runtime.factory import (
        ExecutionEngineFactory as ExecutionEngineFactory,
        configure_execution_engine_factory as configure_execution_engine_factory,
        get_execution_engine_factory as get_execution_engine_factory,
        reset_execution_engine_factory as reset_execution_engine_factory,
    )
    from agentengine.runtime.runs import RunRecord as RunRecord, RunRegistry as RunRegistry
    from agentengine.sinks.memory import InMemoryEventSink as InMemoryEventSink
    from agentengine.sinks.protocol import (
        LIVE as LIVE,
        EventGap as EventGap,
        EventSink as EventSink,
        StreamItem as StreamItem,
    )
    from agentengine.telemetry import RunTimings as RunTimings

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
    "BackendUnavailableError": "agentengine.errors",
    "BaseEvent": "agentengine.events",
    "ConfigError": "agentengine.errors",
    "DrainingError": "agentengine.errors",
    "DrainingErrorMiddleware": "agentengine.runtime.drain",
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
    "LIVE": "agentengine.sinks.protocol",
    "PipelineStep": "agentengine.runtime.engine",
    "PluginInfo": "agentengine.plugins.loading",
    "PluginLoadError": "agentengine.errors",
    "RegistrationError": "agentengine.errors",
    "RequestScope": "agentengine.request_scope",
    "ResourceRegistry": "agentengine.definitions.resources",
    "RunContext": "agentengine.definitions.run",
    "RunHandle": "agentengine.runtime.engine",
    "RunResult": "agentengine.runtime.engine",
    "RunRecord": "agentengine.runtime.runs",
    "RunRegistry": "agentengine.runtime.runs",
    "RunTimings": "agentengine.telemetry",
    "RunStatus": "agentengine.events",
    "ScopedResourceError": "agentengine.errors",
    "ShutdownDrain": "agentengine.runtime.drain",
    "Settings": "agentengine.config",
    "StreamItem": "agentengine.sinks.protocol",
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
    "check_arguments": "agentengine.definitions.tools",
    "check_run_input": "agentengine.definitions.agents",
    "configure_execution_engine_factory": "agentengine.runtime.factory",
    "drain_on_signal": "agentengine.runtime.drain",
    "get_execution_engine_factory": "agentengine.runtime.factory",
    "hookimpl": "agentengine.plugins.hooks",
    "hookspec": "agentengine.plugins.hooks",
    "load_plugin": "agentengine.plugins.loading",
    "load_settings": "agentengine.config",
    "parse_event": "agentengine.events",
    "wire_size": "agentengine.events",
    "reset_execution_engine_factory": "agentengine.runtime.factory",
    "tool": "agentengine.definitions.tools",
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__version__ = "0.1.0"

# Every public name is listed once, in _EXPORTS (the TYPE_CHECKING imports above are the same
# names for type checkers; tests/core/test_public_names.py keeps the two equal).
__all__ = [*_EXPORTS, "__version__"]  # noqa: PLE0604 - the keys are strings
