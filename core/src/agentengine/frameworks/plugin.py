"""``DeclaredAgentsPlugin``: the plugin registering an adapter's declared agents.

It reads the adapter's table only when the configuration has one, and imports the adapter's
configuration module (and so its framework) only then: the entry point is loaded by every
``agentengine`` command.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from agentengine.plugins.hooks import hookimpl

if TYPE_CHECKING:
    from agentengine.config import Settings
    from agentengine.definitions.agents import AgentRegistry

__all__ = ["DeclaredAgentsPlugin"]


class DeclaredAgentsPlugin:
    """Registers the agents declared in the adapter's table (none by default).

    A subclass sets ``name`` (the table) and ``settings_loader`` (``"module:function"``, the
    function reading the table from ``Settings`` into a model with ``agents``).
    """

    name: str
    settings_loader: str

    def __init__(self) -> None:
        self._settings: Any = None

    @hookimpl
    def agentengine_configure(self, settings: Settings) -> None:
        """Read and check the table."""
        if not settings.section(self.name):
            self._settings = None
            return
        module, _, function = self.settings_loader.partition(":")
        self._settings = getattr(importlib.import_module(module), function)(settings)

    @hookimpl
    def agentengine_register_agents(self, registry: AgentRegistry) -> None:
        """Add each declared agent."""
        if self._settings is None:
            return
        for declared in self._settings.agents:
            registry.add(declared.build())
