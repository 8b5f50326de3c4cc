"""The pytest kit for plugin authors (registered as the ``agentengine`` pytest plugin)."""

from __future__ import annotations

__all__: list[str] = []
