"""The old engine and factory names, kept working for a deprecation period.

Codebases moving off the original backend's seven engine classes and four factories keep their
imports and constructor calls while they migrate (``docs/migration.md`` maps each old call to
the new one). Every name here is a thin constructor of the new API, not a class with behaviour
of its own; each call warns ``DeprecationWarning`` naming the exact replacement.

The package is a leaf of nothing: the runtime does not import it. Its modules:

``names``         the deprecated names, as constants (read by the migrator without the engine)
``constructors``  the engine and factory names and the deprecated functions
``bridge``        the old ``websocket_bridge`` forwarding events to an object's ``notify_*``
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentengine.lazy import lazy_exports
from agentengine.legacy.names import LEGACY_ENGINE_NAMES, LEGACY_FACTORY_NAMES

if TYPE_CHECKING:
    from agentengine.legacy.bridge import LegacyBridgePlugin as LegacyBridgePlugin
    from agentengine.legacy.constructors import (
        BaseExecutionEngine as BaseExecutionEngine,
        ExecutionEngine as ExecutionEngine,
        ExecutionEngineConsolidated as ExecutionEngineConsolidated,
        ExecutionFactory as ExecutionFactory,
        IsolatedExecutionEngine as IsolatedExecutionEngine,
        MCPEnhancedExecutionEngine as MCPEnhancedExecutionEngine,
        RequestScopedExecutionEngine as RequestScopedExecutionEngine,
        RequestScopedExecutionEngineFactory as RequestScopedExecutionEngineFactory,
        ToolExecutionEngine as ToolExecutionEngine,
        UnifiedExecutionEngineFactory as UnifiedExecutionEngineFactory,
        UserExecutionEngineFactory as UserExecutionEngineFactory,
        create_execution_engine_factory as create_execution_engine_factory,
        create_request_scoped_engine as create_request_scoped_engine,
        user_execution_engine as user_execution_engine,
    )

#: The deprecated functions (beside the engine and factory names).
LEGACY_FUNCTION_NAMES = (
    "create_execution_engine_factory",
    "create_request_scoped_engine",
    "user_execution_engine",
)

# The names are imported on first use: reading ``LEGACY_ENGINE_NAMES`` needs no engine.
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        **dict.fromkeys(
            (*LEGACY_ENGINE_NAMES, *LEGACY_FACTORY_NAMES, *LEGACY_FUNCTION_NAMES),
            "agentengine.legacy.constructors",
        ),
        "LegacyBridgePlugin": "agentengine.legacy.bridge",
    },
)

__all__ = [  # noqa: PLE0604 - every item is a string
    *LEGACY_ENGINE_NAMES,
    *LEGACY_FACTORY_NAMES,
    *LEGACY_FUNCTION_NAMES,
    "LEGACY_ENGINE_NAMES",
    "LEGACY_FACTORY_NAMES",
    "LegacyBridgePlugin",
]
