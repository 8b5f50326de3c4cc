"""Build hook: put the workspace's plugin template into the wheel as agentengine/_plugin_template.

A wheel built from the sdist finds the template already under src/agentengine/ (the sdist
force-includes it there), so the hook only acts when building from the workspace.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class CustomBuildHook(BuildHookInterface):
    """Adds ../plugins/_template when it exists (a build from the workspace)."""

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        template = Path(self.root).parent / "plugins" / "_template"
        if template.is_dir() and version != "editable":
            build_data["force_include"][str(template)] = "agentengine/_plugin_template"
