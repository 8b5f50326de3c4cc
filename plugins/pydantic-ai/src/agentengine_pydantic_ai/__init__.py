"""agentengine-pydantic-ai: pydantic-ai agents run as agentengine agents.

```python
from agentengine import hookimpl
from agentengine_pydantic_ai import from_pydantic_ai
from pydantic_ai import Agent

assistant = Agent("openai:gpt-5.2", instructions="Be brief.")

class MyPlugin:
    @hookimpl
    def agentengine_register_agents(self, registry):
        registry.add(from_pydantic_ai(assistant, name="assistant", tools=["forecast", "time.*"]))
```

Each run gets the engine's events (text as ``agent_thinking``, every tool call as one
``tool_executing``/``tool_completed`` pair), the engine's tools (MCP tools of the user's own
sessions included), its limits and its isolation. Agents can also be declared in
``[[pydantic_ai.agents]]`` of ``agentengine.toml``. See ``docs/agent-frameworks.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentengine.lazy import lazy_exports

if TYPE_CHECKING:
    from agentengine_pydantic_ai.adapter import ChatMessage, PydanticAIAgent, from_pydantic_ai
    from agentengine_pydantic_ai.config import DeclaredAgent, PydanticAISettings
    from agentengine_pydantic_ai.names import model_tool_name
    from agentengine_pydantic_ai.plugin import PydanticAIPlugin
    from agentengine_pydantic_ai.tools import UnknownToolsError

# Imported on first use: the entry point names ``agentengine_pydantic_ai:PydanticAIPlugin``
# and every ``agentengine`` command loads it, so importing the package must not import
# pydantic-ai.
_EXPORTS = {
    "ChatMessage": "agentengine_pydantic_ai.adapter",
    "PydanticAIAgent": "agentengine_pydantic_ai.adapter",
    "from_pydantic_ai": "agentengine_pydantic_ai.adapter",
    "DeclaredAgent": "agentengine_pydantic_ai.config",
    "PydanticAISettings": "agentengine_pydantic_ai.config",
    "model_tool_name": "agentengine_pydantic_ai.names",
    "PydanticAIPlugin": "agentengine_pydantic_ai.plugin",
    "UnknownToolsError": "agentengine_pydantic_ai.tools",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__version__ = "0.1.0"

__all__ = [
    "ChatMessage",
    "DeclaredAgent",
    "PydanticAIAgent",
    "PydanticAIPlugin",
    "PydanticAISettings",
    "UnknownToolsError",
    "__version__",
    "from_pydantic_ai",
    "model_tool_name",
]
