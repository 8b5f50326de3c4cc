"""The built-in presets: the same data shape as a user's ``[tool.agentengine.migrate]`` table.

``agentengine-legacy``  the names of ``agentengine.legacy`` -> their replacements;
``netra``               the original backend's deprecated engine modules -> its SSOT modules.
"""

from __future__ import annotations

from typing import Any

from agentengine.legacy.names import LEGACY_ENGINE_NAMES, LEGACY_FACTORY_NAMES

__all__ = ["PRESETS"]

_AE = "agentengine"
_AE_ENGINE = f"{_AE}:UserExecutionEngine"
_AE_FACTORY = f"{_AE}:ExecutionEngineFactory"
_AE_GET_FACTORY = f"{_AE}:get_execution_engine_factory"

_AGENTENGINE_LEGACY: dict[str, Any] = {
    "modules": {
        "agentengine.legacy": {
            "message": (
                "engines come from the one ExecutionEngineFactory, one UserExecutionEngine per "
                "user; user_execution_engine(ctx) and create_request_scoped_engine(ctx) become "
                "ExecutionEngineFactory.user_execution_engine(ctx): "
                "`get_execution_engine_factory().user_execution_engine(ctx)`"
            ),
            "names": {
                **dict.fromkeys(LEGACY_ENGINE_NAMES, _AE_ENGINE),
                **dict.fromkeys(LEGACY_FACTORY_NAMES, _AE_FACTORY),
                "ExecutionEngineFactory": _AE_FACTORY,
                "create_execution_engine_factory": _AE_GET_FACTORY,
                "get_execution_engine_factory": _AE_GET_FACTORY,
                "UserExecutionEngine": _AE_ENGINE,
            },
        },
    },
    "calls": {
        f"agentengine.legacy:{old}": f"{_AE_ENGINE}.create_from_legacy"
        for old in LEGACY_ENGINE_NAMES
    },
}

_NB = "netra_backend.app"
_UEE = f"{_NB}.agents.supervisor.user_execution_engine"
_EEF = f"{_NB}.agents.supervisor.execution_engine_factory"
_ENGINE = f"{_UEE}:UserExecutionEngine"
_FACTORY = f"{_EEF}:ExecutionEngineFactory"

# The classes and functions the deprecated modules exported, by kind: every engine class went
# to UserExecutionEngine, every factory class to ExecutionEngineFactory, and the factory
# functions kept their names in execution_engine_factory.
# The original backend's engine names are agentengine.legacy's (which kept them), plus three
# of its own that agentengine.legacy does not carry.
_ENGINE_NAMES = dict.fromkeys(
    (*LEGACY_ENGINE_NAMES, "BaseExecutor", "UnifiedExecutionEngine", "UserExecutionEngine"),
    _ENGINE,
)
_FACTORY_NAMES = dict.fromkeys(("ExecutionEngineFactory", *LEGACY_FACTORY_NAMES), _FACTORY)
_FUNCTION_NAMES = {
    name: f"{_EEF}:{name}"
    for name in (
        "get_execution_engine_factory",
        "user_execution_engine",
        "create_request_scoped_engine",
    )
} | {"create_execution_engine_factory": f"{_EEF}:get_execution_engine_factory"}

_NETRA_NAMES = _ENGINE_NAMES | _FACTORY_NAMES | _FUNCTION_NAMES

_NETRA_DEPRECATED = (
    f"{_NB}.agents.supervisor.execution_engine",
    f"{_NB}.agents.supervisor.request_scoped_execution_engine",
    f"{_NB}.agents.supervisor.mcp_execution_engine",
    f"{_NB}.agents.supervisor.execution_factory",
    f"{_NB}.agents.supervisor.execution_engine_unified_factory",
    f"{_NB}.agents.execution_engine_unified_factory",
    f"{_NB}.agents.execution_engine_consolidated",
    f"{_NB}.core.execution_engine",
    f"{_NB}.services.unified_tool_registry.execution_engine",
    f"{_NB}.core.managers.execution_engine_factory",
    f"{_NB}.agents.base.executor",
)

_NETRA: dict[str, Any] = {
    "modules": {
        module: {
            "message": "use the SSOT modules user_execution_engine / execution_engine_factory",
            "names": dict(_NETRA_NAMES),
        }
        for module in _NETRA_DEPRECATED
    },
}

PRESETS: dict[str, dict[str, Any]] = {
    "agentengine-legacy": _AGENTENGINE_LEGACY,
    "netra": _NETRA,
}
