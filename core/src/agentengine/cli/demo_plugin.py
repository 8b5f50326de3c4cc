"""The built-in demo plugin: agents and tools that need no model and no server.

Registered through the ``agentengine`` entry-point group like any third-party plugin, but
opt-in (``opt_in = True``): a factory loads it only when asked for by name, so an application
never offers these agents to its users by accident. ``agentengine demo``, ``agentengine run``
and ``agentengine serve --dev`` ask for it; an application can with ``[plugins] enable =
["demo"]``, ``AGENTENGINE_ENABLE_PLUGINS=demo`` or ``ExecutionEngineFactory(enable_plugins=
["demo"])``, and ``[plugins] disable = ["demo"]`` keeps it out even of those commands. Every run
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
    #: Loaded only when enabled by name (see ``agentengine.plugins.loading``).
    opt_in = True

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
