"""agentengine-openai-agents: OpenAI Agents SDK agents run as agentengine agents.

```python
from agentengine import hookimpl
from agentengine_openai_agents import from_openai_agents
from agents import Agent

assistant = Agent(name="assistant", model="gpt-5.2", instructions="Be brief.")

class MyPlugin:
    @hookimpl
    def agentengine_register_agents(self, registry):
        registry.add(from_openai_agents(assistant, name="assistant", tools=["forecast", "time.*"]))
```

Each run gets the engine's events (text as ``agent_thinking``, every tool call as one
``tool_executing``/``tool_completed`` pair), the engine's tools (MCP tools of the user's own
sessions included), its limits and its isolation. Agents can also be declared in
``[[openai_agents.agents]]`` of ``agentengine.toml``. See ``docs/agent-frameworks.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentengine.lazy import lazy_exports

if TYPE_CHECKING:
    from agentengine_openai_agents.adapter import (
        ChatMessage as ChatMessage,
        OpenAIAgentsAgent as OpenAIAgentsAgent,
        from_openai_agents as from_openai_agents,
    )
    from agentengine_openai_agents.config import (
        DeclaredAgent as DeclaredAgent,
        OpenAIAgentsSettings as OpenAIAgentsSettings,
    )
    from agentengine_openai_agents.plugin import OpenAIAgentsPlugin as OpenAIAgentsPlugin

# Imported on first use: the entry point names ``agentengine_openai_agents:OpenAIAgentsPlugin``
# and every ``agentengine`` command loads it, so importing the package must not import the SDK.
_EXPORTS = {
    "ChatMessage": "agentengine_openai_agents.adapter",
    "OpenAIAgentsAgent": "agentengine_openai_agents.adapter",
    "from_openai_agents": "agentengine_openai_agents.adapter",
    "DeclaredAgent": "agentengine_openai_agents.config",
    "OpenAIAgentsSettings": "agentengine_openai_agents.config",
    "OpenAIAgentsPlugin": "agentengine_openai_agents.plugin",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__version__ = "0.1.0"

__all__ = [
    "ChatMessage",
    "DeclaredAgent",
    "OpenAIAgentsAgent",
    "OpenAIAgentsPlugin",
    "OpenAIAgentsSettings",
    "__version__",
    "from_openai_agents",
]
