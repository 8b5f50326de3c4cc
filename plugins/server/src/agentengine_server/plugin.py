"""The plugin object registered under the ``agentengine`` entry-point group.

The ``agentengine serve`` command it brings is declared in entry-point group
``agentengine.commands`` (see ``pyproject.toml``), so other commands never import it; this
object is what ``agentengine plugins`` lists and ``[plugins] disable`` names (disabling
``server`` removes ``serve``)."""

from __future__ import annotations

__all__ = ["ServerPlugin"]


class ServerPlugin:
    """The ``agentengine serve`` distribution, as a plugin."""

    name = "server"
