"""The ``[openai_agents]`` configuration table: agents declared without Python.

```toml
[[openai_agents.agents]]
name = "assistant"                       # the agentengine agent's name
model = "gpt-5.2"                        # any model name the SDK accepts
instructions = "Answer in one sentence."
tools = ["forecast", "time.*"]           # agentengine tools, by name or glob
max_turns = 10                           # model turns of each run (the SDK's max_turns)
```

API keys come from the environment, as the SDK reads them (``OPENAI_API_KEY`` ...); the model
is resolved when a run starts, so a missing key fails that run, not the factory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentengine.frameworks.declared import DeclaredAgentBase, DeclaredAgents
from pydantic import Field

if TYPE_CHECKING:
    from agentengine import Settings

    from agentengine_openai_agents.adapter import OpenAIAgentsAgent

__all__ = ["DeclaredAgent", "OpenAIAgentsSettings", "load_settings"]

#: The table this plugin owns.
TABLE = "openai_agents"


class DeclaredAgent(DeclaredAgentBase):
    """One ``[[openai_agents.agents]]`` entry."""

    max_turns: int = Field(default=10, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1)
    tracing: bool = False

    def build(self) -> OpenAIAgentsAgent:
        """The agentengine agent this entry declares."""
        from agents import Agent, ModelSettings, RunConfig

        from agentengine_openai_agents.adapter import from_openai_agents

        framework: Agent[Any] = Agent(
            name=self.name,
            model=self.model,
            instructions=self.instructions,
            model_settings=ModelSettings(temperature=self.temperature, max_tokens=self.max_tokens),
        )
        return from_openai_agents(
            framework,
            name=self.name,
            tools=self.tools,
            description=self.description,
            max_turns=self.max_turns,
            run_config=RunConfig(tracing_disabled=not self.tracing),
            thinking_window=self.thinking_window,
        )


class OpenAIAgentsSettings(DeclaredAgents[DeclaredAgent]):
    """The ``[openai_agents]`` table."""


def load_settings(settings: Settings) -> OpenAIAgentsSettings:
    """Read and validate ``[openai_agents]`` (``ConfigError`` naming file, table and key)."""
    return settings.model(TABLE, OpenAIAgentsSettings)
