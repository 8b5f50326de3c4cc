"""The plugin object registered under entry-point group ``agentengine``.

Its two commands are declared in entry-point group ``agentengine.commands`` (see
``pyproject.toml``), so that ``agentengine check`` imports them and nothing of this plugin or
the others; this object is what ``agentengine plugins`` lists and ``[plugins] disable``
names (disabling ``migrate`` removes both commands).
"""

from __future__ import annotations

__all__ = ["MigratePlugin"]


class MigratePlugin:
    """The ``agentengine check`` and ``agentengine migrate`` distribution, as a plugin."""

    name = "migrate"
