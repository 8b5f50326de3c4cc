"""``PydanticAIPlugin``: the agents declared in ``[[pydantic_ai.agents]]``.

This module is what the entry point loads for every factory and ``agentengine --help``, so
it imports neither pydantic-ai nor the configuration models until a factory asks for them.
"""

from __future__ import annotations

from agentengine.frameworks.plugin import DeclaredAgentsPlugin

__all__ = ["PydanticAIPlugin"]


class PydanticAIPlugin(DeclaredAgentsPlugin):
    """Registers the pydantic-ai agents declared in the configuration (none by default).

    Agents written in Python need no plugin of this package: a plugin of your own adds them
    with ``registry.add(from_pydantic_ai(agent, name=...))``.
    """

    name = "pydantic_ai"
    settings_loader = "agentengine_pydantic_ai.config:load_settings"
