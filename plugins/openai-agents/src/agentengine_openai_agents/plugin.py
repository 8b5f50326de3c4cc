"""``OpenAIAgentsPlugin``: the agents declared in ``[[openai_agents.agents]]``.

This module is what the entry point loads for every ``agentengine`` command, so it imports
neither the SDK nor the configuration models until a factory asks for them.
"""

from __future__ import annotations

from agentengine.frameworks.plugin import DeclaredAgentsPlugin

__all__ = ["OpenAIAgentsPlugin"]


class OpenAIAgentsPlugin(DeclaredAgentsPlugin):
    """Registers the OpenAI Agents SDK agents declared in the configuration (none by default).

    Agents written in Python need no plugin of this package: a plugin of your own adds them
    with ``registry.add(from_openai_agents(agent, name=...))``.
    """

    name = "openai_agents"
    settings_loader = "agentengine_openai_agents.config:load_settings"
