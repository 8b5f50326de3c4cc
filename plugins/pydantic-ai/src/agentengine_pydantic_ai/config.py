"""The ``[pydantic_ai]`` configuration table: agents declared without Python.

```toml
[[pydantic_ai.agents]]
name = "assistant"                       # the agentengine agent's name
model = "openai:gpt-5.2"                 # any model string pydantic-ai accepts
instructions = "Answer in one sentence."
tools = ["forecast", "time.*"]           # agentengine tools, by name or glob
request_limit = 10                       # limits of each run (pydantic-ai's UsageLimits)
```

API keys come from the environment, as pydantic-ai reads them (``OPENAI_API_KEY`` ...); the
model is resolved when a run starts, so a missing key fails that run, not the factory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentengine.frameworks.declared import DeclaredAgentBase, DeclaredAgents
from pydantic import Field

if TYPE_CHECKING:
    from agentengine import Settings

    from agentengine_pydantic_ai.adapter import PydanticAIAgent

__all__ = ["DeclaredAgent", "PydanticAISettings", "load_settings"]

#: The table this plugin owns.
TABLE = "pydantic_ai"


class DeclaredAgent(DeclaredAgentBase):
    """One ``[[pydantic_ai.agents]]`` entry."""

    retries: int = Field(default=1, ge=0)
    request_limit: int | None = Field(default=50, ge=1)
    tool_calls_limit: int | None = Field(default=None, ge=0)
    input_tokens_limit: int | None = Field(default=None, ge=1)
    output_tokens_limit: int | None = Field(default=None, ge=1)
    total_tokens_limit: int | None = Field(default=None, ge=1)

    def build(self) -> PydanticAIAgent:
        """The agentengine agent this entry declares."""
        from pydantic_ai import Agent
        from pydantic_ai.usage import UsageLimits

        from agentengine_pydantic_ai.adapter import from_pydantic_ai

        framework: Agent[Any, Any] = Agent(
            self.model,
            instructions=self.instructions,
            name=self.name,
            retries=self.retries,
            defer_model_check=True,
        )
        limits = UsageLimits(
            request_limit=self.request_limit,
            tool_calls_limit=self.tool_calls_limit,
            input_tokens_limit=self.input_tokens_limit,
            output_tokens_limit=self.output_tokens_limit,
            total_tokens_limit=self.total_tokens_limit,
        )
        return from_pydantic_ai(
            framework,
            name=self.name,
            tools=self.tools,
            description=self.description,
            usage_limits=limits,
            thinking_window=self.thinking_window,
        )


class PydanticAISettings(DeclaredAgents[DeclaredAgent]):
    """The ``[pydantic_ai]`` table."""


def load_settings(settings: Settings) -> PydanticAISettings:
    """Read and validate ``[pydantic_ai]`` (``ConfigError`` naming file, table and key)."""
    return settings.model(TABLE, PydanticAISettings)
