"""The plugin object registered under entry-point group ``agentengine``: it adds two commands."""

from __future__ import annotations

from typing import Any

from agentengine import hookimpl

__all__ = ["MigratePlugin"]


class MigratePlugin:
    """Contributes ``agentengine check`` and ``agentengine migrate``."""

    name = "migrate"

    @hookimpl
    def agentengine_cli_commands(self) -> list[Any]:
        """The two commands (imported here so loading the plugin stays cheap)."""
        from agentengine_migrate.cli import commands

        return list(commands())
