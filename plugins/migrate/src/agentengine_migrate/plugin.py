"""The plugin object registered under entry-point group ``agentengine``: it adds two commands.

The commands are also declared in entry-point group ``agentengine.commands`` (see
``pyproject.toml``), which is how ``agentengine check`` finds them without loading this or
any other plugin; the hook returns the same objects, for ``agentengine --help`` and the
conformance check. Disabling ``migrate`` in ``[plugins]`` removes both commands.
"""

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
