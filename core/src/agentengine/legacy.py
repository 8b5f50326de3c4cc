"""The old engine and factory names, kept working for a deprecation period.

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

import asyncio
import contextlib
import inspect
import uuid
import warnings
from collections.abc import AsyncIterator, Callable
from typing import Any

import structlog

from agentengine.agents import Agent, AgentRegistry
from agentengine.context import UserExecutionContext
from agentengine.engine import UserExecutionEngine
from agentengine.errors import InvalidContextError, PluginLoadError, RegistrationError
from agentengine.events import BaseEvent
from agentengine.factory import ExecutionEngineFactory, get_execution_engine_factory
from agentengine.hookspecs import hookimpl
from agentengine.legacy_names import LEGACY_ENGINE_NAMES, LEGACY_FACTORY_NAMES

__all__ = [
    "BaseExecutionEngine",
    "ExecutionEngine",
    "ExecutionEngineConsolidated",
    "ExecutionFactory",
    "IsolatedExecutionEngine",
    "LEGACY_ENGINE_NAMES",
    "LEGACY_FACTORY_NAMES",
    "LegacyBridgePlugin",
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


# -- event bridge --------------------------------------------------------------------------

_NOTIFY = (
    "notify_agent_started",
    "notify_agent_thinking",
    "notify_tool_executing",
    "notify_tool_completed",
    "notify_agent_completed",
)


def _check_bridge(bridge: Any) -> None:
    if all(callable(getattr(bridge, name, None)) for name in _NOTIFY) or callable(bridge):
        return
    missing = [name for name in _NOTIFY if not callable(getattr(bridge, name, None))]
    raise TypeError(
        f"websocket_bridge {type(bridge).__name__} is not usable: it needs the methods "
        f"{', '.join(_NOTIFY)} (missing: {', '.join(missing)}), or must be a callable receiving "
        "each event's wire dict; pass None to use the factory's event sink"
    )


def _bridge_call(bridge: Any, event: BaseEvent) -> Any:
    """Call the old bridge method for ``event`` (or the callable with its wire dict)."""
    data = event.to_wire()
    kind = data["type"]
    if not callable(getattr(bridge, "notify_agent_started", None)):
        return bridge(data)
    run_id, agent_name = data["run_id"], data["agent"]
    if kind == "agent_started":
        context = {"user_id": data["user_id"], "thread_id": data["thread_id"]}
        return bridge.notify_agent_started(run_id, agent_name, {**context, "input": data["input"]})
    if kind == "agent_thinking":
        return bridge.notify_agent_thinking(run_id, agent_name, data["text"], data["step"])
    if kind == "tool_executing":
        return bridge.notify_tool_executing(run_id, agent_name, data["tool"], data["args"])
    if kind == "tool_completed":
        outcome = {k: data[k] for k in ("tool_call_id", "status", "result", "error")}
        return bridge.notify_tool_completed(
            run_id, agent_name, data["tool"], outcome, data["duration_ms"]
        )
    if kind == "agent_error":
        notify_error = getattr(bridge, "notify_agent_error", None)
        if notify_error is None:
            return None
        return notify_error(run_id, agent_name, data["error"], {"error_type": data["error_type"]})
    outcome = {k: data[k] for k in ("status", "output", "error")}
    return bridge.notify_agent_completed(run_id, agent_name, outcome, data["duration_ms"])


class _BridgeForwarder:
    """Extension forwarding every event of one engine to an old-style bridge, in order.

    ``on_event`` must not block, so events are queued and one task per engine awaits the
    bridge's coroutines in order. A bridge that raises is logged; the run is not affected.
    """

    plugin_name: str | None = "legacy_bridge"

    def __init__(self, bridge: Any, drain_timeout: float = 5.0) -> None:
        self._bridge = bridge
        self._drain_timeout = drain_timeout
        self._queue: asyncio.Queue[BaseEvent] | None = None
        self._worker: asyncio.Task[None] | None = None

    def on_event(self, event: BaseEvent) -> None:
        """Queue the event for the bridge."""
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(
                self._forward(self._queue), name="agentengine-legacy-bridge"
            )
        self._queue.put_nowait(event)

    async def _forward(self, queue: asyncio.Queue[BaseEvent]) -> None:
        while True:
            event = await queue.get()
            try:
                outcome = _bridge_call(self._bridge, event)
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception as exc:
                _log.error(
                    "websocket bridge failed to take an event; skipped",
                    event_type=event.type,
                    run_id=event.run_id,
                    error=f"{type(exc).__name__}: {exc}",
                )
            finally:
                queue.task_done()

    async def close(self) -> None:
        """Deliver what is queued (for up to ``drain_timeout`` seconds), then stop."""
        if self._queue is None or self._worker is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._drain_timeout):
                await self._queue.join()
        self._worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._worker


class LegacyBridgePlugin:
    """A plugin forwarding the events of every engine of a factory to an old-style bridge
    (what the legacy factory names do with their ``websocket_bridge`` argument)."""

    name = "legacy_bridge"

    def __init__(self, bridge: Any) -> None:
        _check_bridge(bridge)
        self.bridge = bridge

    @hookimpl
    def agentengine_engine_extensions(self) -> _BridgeForwarder:
        """One forwarder per engine."""
        return _BridgeForwarder(self.bridge)


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
        user_id=f"anonymous-{uuid.uuid4().hex}",
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
        _check_bridge(websocket_bridge)
    if user_context is None:
        user_context = _anonymous_context(kind)
    elif not isinstance(user_context, UserExecutionContext):
        raise InvalidContextError(
            f"{kind}: user_context must be a UserExecutionContext, got "
            f"{type(user_context).__name__}; build one with UserExecutionContext.for_user(id)"
        )
    _adopt_agents(factory, registry)
    extensions = [] if websocket_bridge is None else [_BridgeForwarder(websocket_bridge)]
    return factory.create_for_user_sync(user_context, extensions=extensions)


class _LegacyName:
    """A deprecated engine or factory name: calling it warns and builds the replacement.

    ``isinstance(x, OldName)`` is true for what the replacement builds; subclassing is
    refused (a variant is a plugin now).
    """

    def __init__(self, name: str, replacement: str, build: Callable[..., Any], made: type) -> None:
        self.__name__ = self.__qualname__ = name
        self.__module__ = __name__
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
        _check_bridge(websocket_bridge)
    extensions = [] if websocket_bridge is None else [_BridgeForwarder(websocket_bridge)]
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
