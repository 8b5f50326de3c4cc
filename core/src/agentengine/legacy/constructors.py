"""The deprecated engine and factory names, each a thin constructor of the new API.

Codebases moving off the original backend's seven engine classes and four factories can keep
their imports and constructor calls while they migrate (``docs/migration.md`` maps each old
call to the new one). Every name here is a *thin constructor*, not a class with behaviour of
its own:

* each engine name accepts the old ``(registry, websocket_bridge=None, user_context=None)``
  signature and returns a ``UserExecutionEngine`` made by the process-default factory
  (``get_execution_engine_factory()``, set with ``configure_execution_engine_factory``) or by
  the ``factory=`` given, with the plugins that variant needs;
* each factory name returns an ``ExecutionEngineFactory``;
* every call warns ``DeprecationWarning`` (every time; Python's warning filters decide how
  often it is shown) pointing at the caller's line and naming the exact replacement.

The old constructors were synchronous, so engines are made with
``ExecutionEngineFactory.create_for_user_sync``: the engine is returned at once, and any
extension that needs an async start is started at the beginning of its first run. The caller
owns the engine: ``await engine.cleanup()`` (or ``await engine.shutdown()``) when done.

``registry`` is an ``AgentRegistry``, a mapping of names to agents (``Agent`` objects or
``async def agent(run, **input)`` functions), or None. Agents the factory does not know yet are
added to it (as plugin ``legacy``); a *different* agent under a name the factory already has is
refused. ``websocket_bridge`` is an object with the old ``notify_agent_started`` /
``notify_agent_thinking`` / ``notify_tool_executing`` / ``notify_tool_completed`` /
``notify_agent_completed`` (and optionally ``notify_agent_error``) coroutine methods, or a
callable receiving each event's wire dict; every event of the engine is forwarded to it in
order, in addition to the factory's event sink. Without a bridge, the factory's event sink is
the bridge: subscribe with ``factory.events.subscribe(user_id)``. Without ``user_context`` a
fresh anonymous user is made for the engine, marked ``anonymous`` in the context's metadata and
logged as a warning: it never shares anything with another caller's engine.
"""

from __future__ import annotations

import contextlib
import inspect
import warnings
from collections.abc import AsyncIterator, Callable
from typing import Any

import structlog

from agentengine.context import UserExecutionContext
from agentengine.definitions.agents import Agent, AgentRegistry
from agentengine.errors import InvalidContextError, PluginLoadError, RegistrationError
from agentengine.ids import new_id
from agentengine.legacy.bridge import BridgeForwarder, LegacyBridgePlugin, check_bridge
from agentengine.runtime.engine import UserExecutionEngine
from agentengine.runtime.factory import ExecutionEngineFactory, get_execution_engine_factory

__all__ = [
    "BaseExecutionEngine",
    "ExecutionEngine",
    "ExecutionEngineConsolidated",
    "ExecutionFactory",
    "IsolatedExecutionEngine",
    "MCPEnhancedExecutionEngine",
    "RequestScopedExecutionEngine",
    "RequestScopedExecutionEngineFactory",
    "ToolExecutionEngine",
    "UnifiedExecutionEngineFactory",
    "UserExecutionEngineFactory",
    "create_execution_engine_factory",
    "create_request_scoped_engine",
    "user_execution_engine",
]

_log = structlog.get_logger("agentengine.legacy")

_MIGRATION = "see docs/migration.md"


def warn_deprecated(old: str, new: str, *, stacklevel: int = 3) -> None:
    """Warn that ``old`` is deprecated in favour of ``new``, at the line calling ``old``.

    ``new`` names the replacement class or method in full (``ExecutionEngineFactory.
    create_for_user(ctx)``, not ``factory.create_for_user``). Called directly by each legacy
    entry point, so stacklevel 3 is that entry point's caller.
    """
    warnings.warn(
        f"{old} is deprecated and will be removed; use {new} instead ({_MIGRATION})",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


# -- engines -------------------------------------------------------------------------------


def _legacy_agents(registry: Any) -> list[Agent]:
    if registry is None:
        return []
    if isinstance(registry, AgentRegistry):
        return list(registry)
    items = getattr(registry, "items", None)
    if not callable(items):
        raise TypeError(
            f"registry must be an AgentRegistry, a mapping of agent names to agents, or None; "
            f"got {type(registry).__name__}"
        )
    agents = []
    for name, item in items():
        if isinstance(item, Agent):
            agents.append(item if item.name == name else Agent(item.func, name=str(name)))
        else:
            agents.append(Agent(item, name=str(name)))
    return agents


def _adopt_agents(factory: ExecutionEngineFactory, registry: Any) -> None:
    for found in _legacy_agents(registry):
        existing = factory.agents.get(found.name)
        if existing is None:
            factory.agents.current_plugin = "legacy"
            try:
                factory.agents.add(found)
            finally:
                factory.agents.current_plugin = None
        elif existing.func is not found.func:
            owner = factory.agents.owner(found.name)
            raise RegistrationError(
                f"the legacy registry's agent {found.name!r} is not the agent the factory "
                f"already has under that name (from plugin {owner!r}); rename one of "
                "them, or drop it from the registry and let the plugin provide it"
            )


def _anonymous_context(kind: str) -> UserExecutionContext:
    ctx = UserExecutionContext(
        user_id=new_id("anonymous"),
        metadata={
            "anonymous": True,
            "created_by": f"agentengine.legacy.{kind}",
            "note": "no user_context was given: this engine runs for a fresh anonymous user",
        },
    )
    _log.warning(
        "legacy engine created without a user context; using a fresh anonymous user "
        "(pass user_context=UserExecutionContext.for_user(user_id))",
        legacy_name=kind,
        user_id=ctx.user_id,
        anonymous=True,
    )
    return ctx


def _require_plugin(
    factory: ExecutionEngineFactory, kind: str, plugin: str, distribution: str | None
) -> None:
    for info in factory.plugin_infos:
        if info.ok and (info.name == plugin or info.distribution == distribution):
            return
    if distribution is not None:
        import importlib.util

        module = distribution.replace("-", "_")
        if importlib.util.find_spec(module) is None:
            raise PluginLoadError(
                f"{kind} needs the {plugin!r} plugin, which is not installed: install the "
                f"{distribution} distribution (pip install {distribution}, or "
                f"uv add {distribution})"
            )
    raise PluginLoadError(
        f"{kind} needs the {plugin!r} plugin, but this factory did not load it; check "
        "AGENTENGINE_PLUGINS / AGENTENGINE_DISABLE_PLUGINS and `agentengine plugins`, or build "
        "the factory with load_entrypoints=True"
    )


def engine_classmethod(
    method: str,
    registry: Any,
    websocket_bridge: Any,
    user_context: UserExecutionContext | None,
    factory: ExecutionEngineFactory | None,
) -> UserExecutionEngine:
    """The legacy classmethods ``UserExecutionEngine.create_from_legacy`` and
    ``UserExecutionEngine.from_registry``: warn (at their caller's line), then make the engine."""
    warn_deprecated(
        f"UserExecutionEngine.{method}()",
        "ExecutionEngineFactory.create_for_user(ctx) (`await factory.create_for_user(ctx)`)",
        stacklevel=4,
    )
    return construct_engine(method, registry, websocket_bridge, user_context, factory=factory)


def construct_engine(
    kind: str,
    registry: Any,
    websocket_bridge: Any,
    user_context: UserExecutionContext | None,
    *,
    factory: ExecutionEngineFactory | None,
    requires: tuple[str, str | None] | None = None,
) -> UserExecutionEngine:
    """Build the engine for legacy name ``kind`` (the one code path of every engine name)."""
    factory = factory if factory is not None else get_execution_engine_factory()
    if requires is not None:
        _require_plugin(factory, kind, *requires)
    if websocket_bridge is not None:
        check_bridge(websocket_bridge)
    if user_context is None:
        user_context = _anonymous_context(kind)
    elif not isinstance(user_context, UserExecutionContext):
        raise InvalidContextError(
            f"{kind}: user_context must be a UserExecutionContext, got "
            f"{type(user_context).__name__}; build one with UserExecutionContext.for_user(id)"
        )
    _adopt_agents(factory, registry)
    extensions = [] if websocket_bridge is None else [BridgeForwarder(websocket_bridge)]
    return factory.create_for_user_sync(user_context, extensions=extensions)


class _LegacyName:
    """A deprecated engine or factory name: calling it warns and builds the replacement.

    ``isinstance(x, OldName)`` is true for what the replacement builds; subclassing is
    refused (a variant is a plugin now).
    """

    def __init__(self, name: str, replacement: str, build: Callable[..., Any], made: type) -> None:
        self.__name__ = self.__qualname__ = name
        self.__module__ = "agentengine.legacy"  # where users import it from
        self.__doc__ = f"Deprecated: use {replacement}. {inspect.getdoc(build) or ''}".strip()
        self.replacement = replacement
        self._build = build
        self._made = made
        with contextlib.suppress(TypeError, ValueError):
            self.__signature__ = inspect.signature(build)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        warn_deprecated(self.__name__, self.replacement)
        return self._build(*args, **kwargs)

    def __instancecheck__(self, instance: Any) -> bool:
        return isinstance(instance, self._made)

    def __mro_entries__(self, bases: tuple[Any, ...]) -> tuple[type, ...]:
        raise TypeError(
            f"{self.__name__} is a deprecated constructor and cannot be subclassed; write a "
            "plugin instead (an extension with around_run/around_tool: see "
            "docs/writing-plugins.md)"
        )

    def __repr__(self) -> str:
        return f"<deprecated {self.__name__}: use {self.replacement}>"


def _engine_name(
    name: str, replacement: str, requires: tuple[str, str | None] | None = None
) -> _LegacyName:
    def build(
        registry: Any = None,
        websocket_bridge: Any = None,
        user_context: UserExecutionContext | None = None,
        *,
        factory: ExecutionEngineFactory | None = None,
    ) -> UserExecutionEngine:
        """Returns a UserExecutionEngine made by the process-default factory (or
        ``factory``); the caller must ``await engine.cleanup()``."""
        return construct_engine(
            name, registry, websocket_bridge, user_context, factory=factory, requires=requires
        )

    return _LegacyName(name, replacement, build, UserExecutionEngine)


_PLAIN = (
    "ExecutionEngineFactory.user_execution_engine(ctx) "
    "(`async with factory.user_execution_engine(ctx) as engine:`)"
)

ExecutionEngine = _engine_name("ExecutionEngine", _PLAIN)
RequestScopedExecutionEngine = _engine_name(
    "RequestScopedExecutionEngine",
    "ExecutionEngineFactory.create_request_scoped_engine(ctx) "
    "(`async with factory.create_request_scoped_engine(ctx) as engine:`) with resources "
    "declared by the agentengine_register_resources hook",
    requires=("request_scope", None),
)
MCPEnhancedExecutionEngine = _engine_name(
    "MCPEnhancedExecutionEngine",
    f"{_PLAIN} with the agentengine-mcp plugin installed and [[mcp.servers]] configured",
    requires=("mcp", "agentengine-mcp"),
)
ExecutionEngineConsolidated = _engine_name(
    "ExecutionEngineConsolidated",
    f"{_PLAIN}; its extensions are plugins (agentengine_engine_extensions)",
)
IsolatedExecutionEngine = _engine_name(
    "IsolatedExecutionEngine",
    f"{_PLAIN}; per-user isolation and limits are built in (max_concurrent_per_user)",
)
BaseExecutionEngine = _engine_name("BaseExecutionEngine", _PLAIN)
ToolExecutionEngine = _engine_name(
    "ToolExecutionEngine",
    f"{_PLAIN}; tool permission checks are an extension's around_tool",
)


# -- factories ---------------------------------------------------------------------------------

_UNSUPPORTED_FACTORY_ARGS = {
    "database_session_manager": "declare the database session as a request-scoped resource "
    "(agentengine_register_resources) and use it as `await run.scope[name]`",
    "db_session_factory": "declare the database session as a request-scoped resource "
    "(agentengine_register_resources) and use it as `await run.scope[name]`",
    "redis_manager": "install the Redis event-sink plugin and configure it in agentengine.toml",
}


def _build_factory(websocket_bridge: Any = None, **factory_kwargs: Any) -> ExecutionEngineFactory:
    """With no argument: the process-default factory. Otherwise a new
    ``ExecutionEngineFactory(**factory_kwargs)``; ``websocket_bridge`` receives the events of
    every engine it makes."""
    for key, advice in _UNSUPPORTED_FACTORY_ARGS.items():
        if key in factory_kwargs:
            raise TypeError(f"{key} is no longer a factory argument: {advice}")
    if websocket_bridge is None and not factory_kwargs:
        return get_execution_engine_factory()
    if websocket_bridge is not None:
        plugins = [*factory_kwargs.pop("plugins", ()), LegacyBridgePlugin(websocket_bridge)]
        factory_kwargs["plugins"] = plugins
    return ExecutionEngineFactory(**factory_kwargs)


_FACTORY = (
    "the ExecutionEngineFactory(...) class (or get_execution_engine_factory() for the process "
    "default)"
)

UnifiedExecutionEngineFactory = _LegacyName(
    "UnifiedExecutionEngineFactory", _FACTORY, _build_factory, ExecutionEngineFactory
)
ExecutionFactory = _LegacyName("ExecutionFactory", _FACTORY, _build_factory, ExecutionEngineFactory)
RequestScopedExecutionEngineFactory = _LegacyName(
    "RequestScopedExecutionEngineFactory", _FACTORY, _build_factory, ExecutionEngineFactory
)
UserExecutionEngineFactory = _LegacyName(
    "UserExecutionEngineFactory", _FACTORY, _build_factory, ExecutionEngineFactory
)


def create_execution_engine_factory(
    websocket_bridge: Any = None, **factory_kwargs: Any
) -> ExecutionEngineFactory:
    """Deprecated: use ``ExecutionEngineFactory(**factory_kwargs)``. Returns a new factory
    (the process default when called with no argument)."""
    warn_deprecated("create_execution_engine_factory()", _FACTORY)
    return _build_factory(websocket_bridge, **factory_kwargs)


@contextlib.asynccontextmanager
async def _engine_scope(
    kind: str,
    user_context: UserExecutionContext,
    websocket_bridge: Any,
    factory: ExecutionEngineFactory | None,
    requires: tuple[str, str | None] | None,
) -> AsyncIterator[UserExecutionEngine]:
    factory = factory if factory is not None else get_execution_engine_factory()
    if requires is not None:
        _require_plugin(factory, kind, *requires)
    if websocket_bridge is not None:
        check_bridge(websocket_bridge)
    extensions = [] if websocket_bridge is None else [BridgeForwarder(websocket_bridge)]
    engine = await factory.create_for_user(user_context, extensions=extensions)
    try:
        yield engine
    finally:
        await engine.cleanup()


def user_execution_engine(
    user_context: UserExecutionContext,
    websocket_bridge: Any = None,
    *,
    factory: ExecutionEngineFactory | None = None,
) -> contextlib.AbstractAsyncContextManager[UserExecutionEngine]:
    """Deprecated: use ``ExecutionEngineFactory.user_execution_engine(ctx)``. An async
    context manager yielding an engine of the process-default factory, always cleaned up."""
    warn_deprecated(
        "agentengine.legacy.user_execution_engine(ctx)",
        "ExecutionEngineFactory.user_execution_engine(ctx) "
        "(`async with get_execution_engine_factory().user_execution_engine(ctx) as engine:`)",
    )
    return _engine_scope("user_execution_engine", user_context, websocket_bridge, factory, None)


def create_request_scoped_engine(
    user_context: UserExecutionContext,
    websocket_bridge: Any = None,
    *,
    factory: ExecutionEngineFactory | None = None,
) -> contextlib.AbstractAsyncContextManager[UserExecutionEngine]:
    """Deprecated: use ``ExecutionEngineFactory.create_request_scoped_engine(ctx)``. An
    engine for one request: on exit its runs are cancelled and every scoped resource is closed."""
    warn_deprecated(
        "agentengine.legacy.create_request_scoped_engine(ctx)",
        "ExecutionEngineFactory.create_request_scoped_engine(ctx) (`async with "
        "get_execution_engine_factory().create_request_scoped_engine(ctx) as engine:`)",
    )
    return _engine_scope(
        "create_request_scoped_engine",
        user_context,
        websocket_bridge,
        factory,
        ("request_scope", None),
    )
