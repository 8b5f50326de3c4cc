"""What every framework adapter shares: ``agentengine.frameworks``.

An adapter (``agentengine-pydantic-ai``, ``agentengine-openai-agents``, or one for another
framework) turns a framework's agent into an agentengine agent. The framework-neutral parts
live here, so that every adapter behaves the same:

* ``names``: agentengine tool names as model APIs accept them (``model_tool_name``,
  ``ToolNames``: reversible per run), patterns of ``tools=`` (``match_patterns``,
  ``is_per_user_pattern``);
* ``tools``: resolving ``tools=`` for a run (registered and per-user MCP tools,
  ``UnknownToolsError``), the factory-start check, ``FrameworkTool`` (a framework's own tool
  called through the engine), ``refuse_call``;
* ``batching``: ``ThinkingBatcher``, streamed text as ``agent_thinking`` events;
* ``history``: the input (``ChatMessage``) and ``json_output``;
* ``agents``: ``FrameworkAgent``, the base class of the adapted agents;
* ``declared`` and ``plugin``: agents declared in ``agentengine.toml`` (``DeclaredAgentBase``,
  ``DeclaredAgentsPlugin``).

See docs/agent-frameworks.md, "The shared helpers".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentengine.lazy import lazy_exports

if TYPE_CHECKING:
    from agentengine.frameworks.agents import FrameworkAgent as FrameworkAgent
    from agentengine.frameworks.batching import (
        DEFAULT_THINKING_WINDOW as DEFAULT_THINKING_WINDOW,
        ThinkingBatcher as ThinkingBatcher,
        check_window as check_window,
    )
    from agentengine.frameworks.declared import (
        DeclaredAgentBase as DeclaredAgentBase,
        DeclaredAgents as DeclaredAgents,
        unique_agent_names as unique_agent_names,
    )
    from agentengine.frameworks.history import (
        ChatMessage as ChatMessage,
        json_output as json_output,
    )
    from agentengine.frameworks.names import (
        ToolNames as ToolNames,
        is_per_user_pattern as is_per_user_pattern,
        match_patterns as match_patterns,
        model_tool_name as model_tool_name,
    )
    from agentengine.frameworks.plugin import DeclaredAgentsPlugin as DeclaredAgentsPlugin
    from agentengine.frameworks.tools import (
        FrameworkTool as FrameworkTool,
        RelayedError as RelayedError,
        UnknownToolsError as UnknownToolsError,
        check_patterns as check_patterns,
        check_registered as check_registered,
        refuse_call as refuse_call,
        relayed as relayed,
        resolve_tools as resolve_tools,
    )

_EXPORTS: dict[str, str] = {
    "DEFAULT_THINKING_WINDOW": "agentengine.frameworks.batching",
    "ChatMessage": "agentengine.frameworks.history",
    "DeclaredAgentBase": "agentengine.frameworks.declared",
    "DeclaredAgents": "agentengine.frameworks.declared",
    "DeclaredAgentsPlugin": "agentengine.frameworks.plugin",
    "FrameworkAgent": "agentengine.frameworks.agents",
    "FrameworkTool": "agentengine.frameworks.tools",
    "RelayedError": "agentengine.frameworks.tools",
    "ThinkingBatcher": "agentengine.frameworks.batching",
    "ToolNames": "agentengine.frameworks.names",
    "UnknownToolsError": "agentengine.frameworks.tools",
    "check_patterns": "agentengine.frameworks.tools",
    "check_registered": "agentengine.frameworks.tools",
    "check_window": "agentengine.frameworks.batching",
    "is_per_user_pattern": "agentengine.frameworks.names",
    "json_output": "agentengine.frameworks.history",
    "match_patterns": "agentengine.frameworks.names",
    "model_tool_name": "agentengine.frameworks.names",
    "refuse_call": "agentengine.frameworks.tools",
    "relayed": "agentengine.frameworks.tools",
    "resolve_tools": "agentengine.frameworks.tools",
    "unique_agent_names": "agentengine.frameworks.declared",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = [*_EXPORTS]  # noqa: PLE0604 - the keys are strings
