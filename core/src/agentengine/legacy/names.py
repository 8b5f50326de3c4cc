"""The deprecated engine and factory names ``agentengine.legacy`` keeps working.

Kept apart from ``agentengine.legacy`` (which imports the engine) so that tools that only need
the names, such as the migration presets, can read them without importing the engine.
"""

from __future__ import annotations

__all__ = ["LEGACY_ENGINE_NAMES", "LEGACY_FACTORY_NAMES"]

#: The deprecated engine names.
LEGACY_ENGINE_NAMES = (
    "ExecutionEngine",
    "RequestScopedExecutionEngine",
    "MCPEnhancedExecutionEngine",
    "ExecutionEngineConsolidated",
    "IsolatedExecutionEngine",
    "BaseExecutionEngine",
    "ToolExecutionEngine",
)

#: The deprecated factory names.
LEGACY_FACTORY_NAMES = (
    "UnifiedExecutionEngineFactory",
    "ExecutionFactory",
    "RequestScopedExecutionEngineFactory",
    "UserExecutionEngineFactory",
)
