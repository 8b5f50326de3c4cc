"""The plugin object registered under the ``agentengine`` entry-point group: it adds the
``agentengine serve`` command.

The command is also declared in entry-point group ``agentengine.commands`` (see
``pyproject.toml``), which is how ``agentengine serve`` finds it without loading any plugin;
the hook returns the same object, for ``agentengine --help`` and the conformance check."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agentengine import hookimpl

__all__ = ["ServerPlugin"]


class ServerPlugin:
    """Contributes the ``serve`` command to the ``agentengine`` command line."""

    name = "server"

    @hookimpl
    def agentengine_cli_commands(self) -> Sequence[Any]:
        from agentengine_server.cli import serve_command

        return [serve_command]
