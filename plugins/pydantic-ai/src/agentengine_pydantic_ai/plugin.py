"""``PydanticAIPlugin``: the agents declared in ``[[pydantic_ai.agents]]``.

This module is what the entry point loads for every factory and ``agentengine --help``, so
it imports neither pydantic-ai nor the configuration models until a factory asks for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentengine import hookimpl

if TYPE_CHECKING:
    from agentengine import AgentRegistry, Settings

    from agentengine_pydantic_ai.config import PydanticAISettings

__all__ = ["PydanticAIPlugin"]


class PydanticAIPlugin:
    """Registers the pydantic-ai agents declared in the configuration (none by default).

    Agents written in Python need no plugin of this package: a plugin of your own adds them
    with ``registry.add(from_pydantic_ai(agent, name=...))``.
    """

    name = "pydantic_ai"

    def __init__(self) -> None:
        self._settings: PydanticAISettings | None = None

    @hookimpl
    def agentengine_configure(self, settings: Settings) -> None:
        """Read and check ``[pydantic_ai]``."""
        if not settings.section("pydantic_ai"):
            self._settings = None
            return
        from agentengine_pydantic_ai.config import load_settings

        self._settings = load_settings(settings)

    @hookimpl
    def agentengine_register_agents(self, registry: AgentRegistry) -> None:
        """Add each declared agent."""
        if self._settings is None:
            return
        for declared in self._settings.agents:
            registry.add(declared.build())
