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
    )
    from agentengine.config import (
        Settings as Settings,
    )
    from agentengine.config import (
        load_settings as load_settings,
    )
    from agentengine.context import UserExecutionContext as UserExecutionContext
    from agentengine.definitions.agents import (
        Agent as Agent,
    )
    from agentengine.definitions.agents import (
        AgentRegistry as AgentRegistry,
    )
    from agentengine.definitions.agents import (
        agent as agent,
    )
    from agentengine.definitions.agents import (
        check_run_input as check_run_input,
    )
    from agentengine.definitions.resources import ResourceRegistry as ResourceRegistry
    from agentengine.definitions.run import RunContext as RunContext
    from agentengine.definitions.tools import (
        FunctionTool as FunctionTool,
    )
    from agentengine.definitions.tools import (
        Tool as Tool,
    )
    from agentengine.definitions.tools import (
        ToolRegistry as ToolRegistry,
    )
    from agentengine.definitions.tools import (
        check_arguments as check_arguments,
    )
    from agentengine.definitions.tools import (
        tool as tool,
    )
    from agentengine.errors import (
        AgentEngineError as AgentEngineError,
    )
    from agentengine.errors import (
        ConfigError as ConfigError,
    )
    from agentengine.errors import (
        DrainingError as DrainingError,
    )
    from agentengine.errors import (
        EngineClosedError as EngineClosedError,
    )
    from agentengine.errors import (
        EngineLimitError as EngineLimitError,
    )
    from agentengine.errors import (
        InvalidContextError as InvalidContextError,
    )
    from agentengine.errors import (
        PluginLoadError as PluginLoadError,
    )
    from agentengine.errors import (
        RegistrationError as RegistrationError,
    )
    from agentengine.errors import (
        ScopedResourceError as ScopedResourceError,
    )
    from agentengine.errors import (
        ToolArgumentError as ToolArgumentError,
    )
    from agentengine.errors import (
        ToolError as ToolError,
    )
    from agentengine.errors import (
        UnknownAgentError as UnknownAgentError,
    )
    from agentengine.errors import (
        UnknownResourceError as UnknownResourceError,
    )
    from agentengine.events import (
        AgentCompletedEvent as AgentCompletedEvent,
    )
    from agentengine.events import (
        AgentErrorEvent as AgentErrorEvent,
    )
    from agentengine.events import (
        AgentEvent as AgentEvent,
    )
    from agentengine.events import (
        AgentStartedEvent as AgentStartedEvent,
    )
    from agentengine.events import (
        AgentThinkingEvent as AgentThinkingEvent,
    )
    from agentengine.events import (
        BaseEvent as BaseEvent,
    )
    from agentengine.events import (
        RunStatus as RunStatus,
    )
    from agentengine.events import (
        ToolCompletedEvent as ToolCompletedEvent,
    )
    from agentengine.events import (
        ToolExecutingEvent as ToolExecutingEvent,
    )
    from agentengine.events import (
        ToolStatus as ToolStatus,
    )
    from agentengine.events import (
        parse_event as parse_event,
    )
    from agentengine.events import wire_size as wire_size
    from agentengine.plugins.extensions import Extension as Extension
    from agentengine.plugins.extensions import ToolCall as ToolCall
    from agentengine.plugins.hooks import hookimpl as hookimpl
    from agentengine.plugins.hooks import hookspec as hookspec
    from agentengine.plugins.loading import PluginInfo as PluginInfo
    from agentengine.request_scope import RequestScope as RequestScope
    from agentengine.runtime.drain import (
        DrainingErrorMiddleware as DrainingErrorMiddleware,
    )
    from agentengine.runtime.drain import (
        ShutdownDrain as ShutdownDrain,
    )
    from agentengine.runtime.drain import (
        drain_on_signal as drain_on_signal,
    )
    from agentengine.runtime.engine import (
        PipelineStep as PipelineStep,
    )
    from agentengine.runtime.engine import (
        RunHandle as RunHandle,
    )
    from agentengine.runtime.engine import (
        RunResult as RunResult,
    )
    from agentengine.runtime.engine import (
        UserExecutionEngine as UserExecutionEngine,
    )
    from agentengine.runtime.factory import (
        ExecutionEngineFactory as ExecutionEngineFactory,
    )
    from agentengine.runtime.factory import (
        configure_execution_engine_factory as configure_execution_engine_factory,
    )
    from agentengine.runtime.factory import (
        get_execution_engine_factory as get_execution_engine_factory,
    )
    from agentengine.runtime.factory import (
        reset_execution_engine_factory as reset_execution_engine_factory,
    )
    from agentengine.runtime.runs import RunRecord as RunRecord
    from agentengine.runtime.runs import RunRegistry as RunRegistry
    from agentengine.sinks.memory import InMemoryEventSink as InMemoryEventSink
    from agentengine.sinks.protocol import LIVE as LIVE
    from agentengine.sinks.protocol import EventGap as EventGap
    from agentengine.sinks.protocol import EventSink as EventSink
    from agentengine.sinks.protocol import StreamItem as StreamItem

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
