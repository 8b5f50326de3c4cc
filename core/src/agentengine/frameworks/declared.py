"""Agents declared in ``agentengine.toml``, without Python: what every adapter's table shares.

An adapter owns one table (``[pydantic_ai]``, ``[openai_agents]``) holding ``[[<table>.agents]]``
entries. ``DeclaredAgentBase`` holds the keys every framework has (``name``, ``model``,
``instructions``, ``description``, ``tools``, ``thinking_window``); an adapter adds its limits and
``build()``. ``DeclaredAgentsPlugin`` is the plugin registering them: it reads the table only
when the configuration has one and imports the adapter's configuration module (and so its
framework) only then. A bad table is a ``ConfigError`` naming the file, the table and the key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    from agentengine.definitions.agents import Agent

__all__ = ["DeclaredAgentBase", "DeclaredAgents", "unique_agent_names"]

_Declared = TypeVar("_Declared", bound="DeclaredAgentBase")


class DeclaredAgentBase(BaseModel):
    """The keys of one ``[[<table>.agents]]`` entry that every framework has."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    model: str = Field(min_length=1)
    instructions: str | None = None
    description: str | None = None
    tools: list[str] = Field(default_factory=list)
    thinking_window: float = Field(default=0.25, ge=0)

    @field_validator("name", "model")
    @classmethod
    def _no_outer_spaces(cls, value: str) -> str:
        if value != value.strip():
            raise ValueError("must not start or end with whitespace")
        return value

    @field_validator("tools")
    @classmethod
    def _tool_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not name.strip():
                raise ValueError("tool names must not be empty")
        return value

    def build(self) -> Agent:
        """The agentengine agent this entry declares."""
        raise NotImplementedError


def unique_agent_names(agents: list[_Declared]) -> list[_Declared]:
    """``agents``, if no two are called the same (else ``ValueError`` naming the name)."""
    seen: set[str] = set()
    for entry in agents:
        if entry.name in seen:
            raise ValueError(f"two agents are called {entry.name!r}")
        seen.add(entry.name)
    return agents


class DeclaredAgents(BaseModel, Generic[_Declared]):
    """An adapter's table: ``agents``, a list of its ``[[<table>.agents]]`` entries with
    distinct names (subclass it with the adapter's entry model)."""

    model_config = ConfigDict(extra="forbid")

    agents: list[_Declared] = Field(default_factory=list)

    @field_validator("agents")
    @classmethod
    def _unique_names(cls, value: list[_Declared]) -> list[_Declared]:
        return unique_agent_names(value)
