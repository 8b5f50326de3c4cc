"""The built-in demo plugin: agents and tools that need no model and no server.

Registered through the ``agentengine`` entry-point group like any third-party plugin, so
``agentengine plugins`` lists it and ``AGENTENGINE_DISABLE_PLUGINS=demo`` disables it. Every run
of ``researcher`` produces all five event types: started, thinking, tool executing/completed,
completed. The agents live in ``agentengine.cli.demo_agents``, imported only when registered, so
loading this plugin (as every ``agentengine`` command does) stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentengine.plugins.hooks import hookimpl

if TYPE_CHECKING:
    from agentengine.definitions.agents import AgentRegistry
    from agentengine.definitions.tools import ToolRegistry

__all__ = ["DemoPlugin"]


class DemoPlugin:
    """Agents ``researcher`` and ``echo``; tools ``search_notes`` and ``word_count``."""

    name = "demo"

    @hookimpl
    def agentengine_register_agents(self, registry: AgentRegistry) -> None:
        from agentengine.cli.demo_agents import echo, researcher

        registry.add(researcher)
        registry.add(echo)

    @hookimpl
    def agentengine_register_tools(self, registry: ToolRegistry) -> None:
        from agentengine.cli.demo_agents import search_notes, word_count

        registry.add(search_notes)
        registry.add(word_count)
