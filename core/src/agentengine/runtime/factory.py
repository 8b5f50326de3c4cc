"""``ExecutionEngineFactory``: the single creation authority for ``UserExecutionEngine``.

The factory resolves plugins once, when it is built (agents, tools, the event sink), holds the
limits shared by all engines (per-user and global concurrency), and tracks every live engine
so that it can sweep idle ones and shut all of them down gracefully. It keeps no reference to
an engine after its ``cleanup()``, so cleaned-up engines are garbage-collected.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import math
import os
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import structlog

from agentengine.config import NO_CONFIG_FILE, EngineSettings, Settings, load_settings
from agentengine.context import UserExecutionContext
from agentengine.definitions.agents import AgentRegistry, check_run_input
from agentengine.definitions.resources import ResourceRegistry
from agentengine.definitions.tools import ToolRegistry
from agentengine.errors import (
    AgentEngineError,
    DrainingError,
    EngineClosedError,
    EngineLimitError,
    InvalidContextError,
    RegistrationError,
    UnknownAgentError,
    describe_error,
)
from agentengine.events import RunStatus
from agentengine.ids import new_id
from agentengine.plugins.extensions import ExtensionStack, contained
from agentengine.plugins.loading import (
    PluginInfo,
    PluginSelection,
    PluginSet,
    load_plugin,
    load_plugins,
)
from agentengine.runtime.deadlines import DeadlineScheduler
from agentengine.runtime.engine import FACTORY_ONLY, RunHandle, UserExecutionEngine, wait_runs
from agentengine.runtime.limits import ConcurrencyLimiter
from agentengine.runtime.runs import RunRecord, RunRegistry, RunTracker
from agentengine.runtime.services import EngineServices
from agentengine.sinks.memory import InMemoryEventSink
from agentengine.sinks.protocol import EventSink, check_event_sink
from agentengine.telemetry import RunTimings

__all__ = [
    "BUILTIN_PLUGINS",
    "ExecutionEngineFactory",
    "configure_execution_engine_factory",
    "get_execution_engine_factory",
    "reset_execution_engine_factory",
]

_log = structlog.get_logger("agentengine.runtime.factory")

#: Plugins every factory has (disable one with AGENTENGINE_DISABLE_PLUGINS=name).
BUILTIN_PLUGINS: list[tuple[str, str]] = [
    ("request_scope", "agentengine.request_scope:RequestScopePlugin"),
]


class _FromConfig(enum.Enum):
    """The type of ``FROM_CONFIG``: a named sentinel, so that signatures read well."""

    FROM_CONFIG = "FROM_CONFIG"

    def __repr__(self) -> str:
        return "FROM_CONFIG"


#: The default of the factory's settings arguments: "not given, take the configuration's"
#: (``help(ExecutionEngineFactory)`` shows ``run_timeout: float = FROM_CONFIG``). Typed
#: ``Any`` so that each argument keeps its own type.
FROM_CONFIG: Any = _FromConfig.FROM_CONFIG
_CLAIMED_RUN_IDS = 65_536
_RUN_METRIC = {status: f"runs_{status.value}" for status in RunStatus}


def _log_configuration(settings: Settings, *, given: bool) -> None:
    """One line saying which configuration a new factory uses: a factory started outside the
    directory holding ``agentengine.toml`` silently runs on defaults otherwise."""
    if given:
        _log.info("factory configuration given as Settings", config=settings.source)
    elif settings.source == NO_CONFIG_FILE:
        _log.info(
            "no configuration file found; using defaults and the environment (set "
            "AGENTENGINE_CONFIG, or start in the directory holding agentengine.toml)",
            config=None,
            cwd=os.getcwd(),
        )
    else:
        _log.info("factory configuration loaded", config=settings.source)


def _builtin_objects() -> list[tuple[str, Any]]:
    return [(name, load_plugin(target)) for name, target in BUILTIN_PLUGINS]


class ExecutionEngineFactory:
    """Creates and tracks one ``UserExecutionEngine`` per user request.

    Arguments:

    ``plugins``: plugin objects (or classes) to register besides the built-ins and the
    installed entry points. ``load_entrypoints=False`` loads no entry point at all (tests,
    apps that list their plugins). ``enable_plugins``: opt-in entry points to load by name
    (``["demo"]``), besides those the ``[plugins]`` table enables. ``strict_plugins``: raise
    ``PluginLoadError`` when a plugin fails to load (None: ``[plugins] strict`` /
    ``AGENTENGINE_STRICT_PLUGINS``).

    The settings arguments (``max_concurrent_per_user`` ... ``event_total_bytes``) default to
    ``FROM_CONFIG``: not given, they take the ``[engine]`` table of the configuration, then
    the defaults of ``EngineSettings``; given, they win over both. ``event_sink`` replaces
    the sink plugins or the in-memory default would provide.

    ``config``: where the configuration comes from: None (the default) looks for it as
    ``agentengine.config`` says (``AGENTENGINE_CONFIG``, then ``agentengine.toml``, then the
    ``[tool.agentengine]`` table of ``pyproject.toml``, in the working directory), a path
    reads that file (a missing one is a ``ConfigError``), a ``Settings`` is used as is. The
    factory logs, once, which file it used or that it found none.

    ``environ``: the environment variables to read instead of ``os.environ``
    (``AGENTENGINE_CONFIG``, the ``AGENTENGINE_<TABLE>__<KEY>`` overrides and the plugin
    variables): pass a dict to make a factory independent of the process environment (tests,
    several differently configured factories in one process).
    """

    def __init__(
        self,
        *,
        plugins: Sequence[Any] = (),
        load_entrypoints: bool = True,
        strict_plugins: bool | None = None,
        max_concurrent_per_user: int = FROM_CONFIG,
        max_concurrent_runs: int = FROM_CONFIG,
        max_engines_per_user: int = FROM_CONFIG,
        run_timeout: float = FROM_CONFIG,
        tool_timeout: float = FROM_CONFIG,
        drain_timeout: float = FROM_CONFIG,
        close_timeout: float = FROM_CONFIG,
        idle_ttl: float | None = FROM_CONFIG,
        event_retention: int = FROM_CONFIG,
        event_max_users: int = FROM_CONFIG,
        event_max_bytes: int = FROM_CONFIG,
        event_retention_bytes: int = FROM_CONFIG,
        event_total_bytes: int = FROM_CONFIG,
        event_sink: EventSink | None = None,
        config: Settings | str | os.PathLike[str] | None = None,
        environ: Mapping[str, str] | None = None,
        enable_plugins: Sequence[str] = (),
    ) -> None:
        self.settings = (
            config if isinstance(config, Settings) else load_settings(config, environ=environ)
        )
        _log_configuration(self.settings, given=isinstance(config, Settings))
        overrides = {
            key: value
            for key, value in {
                "max_concurrent_per_user": max_concurrent_per_user,
                "max_concurrent_runs": max_concurrent_runs,
                "max_engines_per_user": max_engines_per_user,
                "run_timeout": run_timeout,
                "tool_timeout": tool_timeout,
                "drain_timeout": drain_timeout,
                "close_timeout": close_timeout,
                "idle_ttl": idle_ttl,
                "event_retention": event_retention,
                "event_max_users": event_max_users,
                "event_max_bytes": event_max_bytes,
                "event_retention_bytes": event_retention_bytes,
                "event_total_bytes": event_total_bytes,
            }.items()
            if value is not FROM_CONFIG
        }
        file_settings = self.settings.model("engine", EngineSettings)
        try:
            self.engine_settings = EngineSettings.model_validate(
                {**file_settings.model_dump(), **overrides}
            )
        except ValueError as exc:
            raise AgentEngineError(f"invalid ExecutionEngineFactory argument: {exc}") from None
        es = self.engine_settings
        self.limiter = ConcurrencyLimiter(es.max_concurrent_per_user, es.max_concurrent_runs)
        self.deadlines = DeadlineScheduler()
        selection = PluginSelection.from_config(
            self.settings.section("plugins"), environ, source=self.settings.source
        )
        self.plugins: PluginSet = load_plugins(
            builtins=_builtin_objects(),
            explicit=plugins,
            load_entrypoints=load_entrypoints,
            strict=strict_plugins,
            selection=selection,
            enable=enable_plugins,
        )
        self.agents = AgentRegistry()
        self.tools = ToolRegistry()
        #: Request-scoped resources declared by plugins (see ``agentengine.request_scope``).
        self.resources = ResourceRegistry()
        self._errors: dict[str, int] = {}
        self._resolve_plugins()
        self.events: EventSink = (
            self._choose_sink()
            if event_sink is None
            else check_event_sink(event_sink, "ExecutionEngineFactory(event_sink=...)")
        )
        #: Run and tool timings, for metrics: ``timings.add_listener(...)`` (see
        #: ``agentengine.telemetry``).
        self.timings = RunTimings()
        #: What every engine of this factory gets from it (see ``runtime.services``).
        self.services = EngineServices(
            settings=es,
            agents=self.agents,
            tools=self.tools,
            resources=self.resources,
            deadlines=self.deadlines,
            limiter=self.limiter,
            publish=self.events.publish,
            count_error=self._count_error,
            claim_run_id=self._claim_run_id,
            record_run=self._record_run,
            release=self._forget_engine,
            timings=self.timings,
        )
        self._engines: dict[str, set[UserExecutionEngine]] = {}
        #: Submitted runs (``submit_run``): find, list and cancel a user's runs by id.
        self.runs = self._choose_run_registry()
        # The engines made by submit_run, one per run (not counted in max_engines_per_user).
        self._run_engines: set[UserExecutionEngine] = set()
        # (user id, run id) of contexts whose run id an engine already used; bounded.
        self._claimed_run_ids: dict[tuple[str, str], None] = {}
        self._closed = False
        # While shutdown() drains: when the drain ends (monotonic), for DrainingError.
        self._draining_until: float | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._sweeping = False  # the sweeper is cleaning engines up (not sleeping)
        self._metrics = {
            "engines_created": 0,
            "engines_cleaned": 0,
            "engines_swept": 0,
            "rejections": 0,
            "runs": 0,
            "runs_succeeded": 0,
            "runs_failed": 0,
            "runs_timed_out": 0,
            "runs_cancelled": 0,
        }
        self._run_ms_total = 0.0
        self._created_at = time.monotonic()

    # -- plugin resolution (once) -------------------------------------------------------------

    def _resolve_plugins(self) -> None:
        ps = self.plugins
        ps.call_each("agentengine_configure", {"settings": self.settings})

        def agents_owner(name: str) -> None:
            self.agents.current_plugin = name

        def tools_owner(name: str) -> None:
            self.tools.current_plugin = name

        before_agents = set(self.agents.names())
        ps.call_each("agentengine_register_agents", {"registry": self.agents}, agents_owner)
        ps.call_each("agentengine_register_tools", {"registry": self.tools}, tools_owner)

        def resources_owner(name: str) -> None:
            self.resources.current_plugin = name

        ps.call_each(
            "agentengine_register_resources", {"registry": self.resources}, resources_owner
        )
        self.resources.current_plugin = None
        self.agents.current_plugin = self.tools.current_plugin = None
        self._check_agent_tools()
        for name in self.agents.names():
            info = ps.info(self.agents.owner(name) or "")
            if info is not None and name not in before_agents:
                info.agents.append(name)
        for name in self.tools.names():
            info = ps.info(self.tools.owner(name) or "")
            if info is not None:
                info.tools.append(name)
        for info in ps.errors:
            self._count_error(info.name)
            _log.error(
                "plugin failed to load; the others keep working",
                plugin=info.name,
                distribution=info.distribution,
                error=info.error,
            )

    def _check_agent_tools(self) -> None:
        """Agents that name tools (a framework agent's ``tools=``) check the names now that
        every plugin registered its tools (``agent.check_tools(registry)``). One naming a tool
        that does not exist is dropped and the error recorded against the plugin that added it,
        as if its registration hook had raised; added by no plugin, the error is raised."""
        for agent in list(self.agents):
            check = getattr(agent, "check_tools", None)
            if check is None:
                continue
            try:
                check(self.tools)
            except RegistrationError as exc:
                owner = self.agents.owner(agent.name)
                plugin = self.plugins.manager.get_plugin(owner) if owner else None
                if plugin is None:
                    raise
                self.agents.remove(agent.name)
                self.plugins.record_failure(plugin, f"agentengine_register_agents: {exc}", exc)

    def _choose_sink(self) -> EventSink:
        # The first plugin (in registration order) returning a sink wins; one that raises is
        # recorded and skipped (see the hook's docstring).
        for name, value in self.plugins.call_each(
            "agentengine_event_sink", {"settings": self.settings}, first=True
        ):
            return check_event_sink(value, f"the agentengine_event_sink hook of plugin {name!r}")
        es = self.engine_settings
        return InMemoryEventSink(
            es.event_retention,
            es.event_max_users,
            retention_bytes=es.event_retention_bytes,
            total_bytes=es.event_total_bytes,
            idle_ttl=es.event_log_idle_seconds,
            busy=self._user_busy,
        )

    def _user_busy(self, user_id: str) -> bool:
        """Whether ``user_id`` has a run in flight (so its event log is not idle)."""
        engines: dict[str, set[UserExecutionEngine]] = getattr(self, "_engines", {})
        if any(engine.running for engine in engines.get(user_id, ())):
            return True
        runs: RunRegistry | None = getattr(self, "runs", None)  # both made after the sink
        return runs is not None and runs.in_flight(user_id) > 0

    def _choose_run_registry(self) -> RunRegistry:
        # As for the sink: the first plugin returning a registry wins.
        for name, value in self.plugins.call_each(
            "agentengine_run_registry",
            {
                "settings": self.settings,
                "engine_settings": self.engine_settings,
                "events": self.events,
            },
            first=True,
        ):
            if not isinstance(value, RunRegistry):
                raise AgentEngineError(
                    f"the agentengine_run_registry hook of plugin {name!r} returned "
                    f"{type(value).__name__}; it must return a RunRegistry (or None)"
                )
            return value
        return RunRegistry(self.engine_settings)

    @property
    def plugin_infos(self) -> list[PluginInfo]:
        """What is known of every plugin (loaded or failed)."""
        return list(self.plugins.infos)

    # -- engines ------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once shutdown began."""
        return self._closed

    @property
    def draining(self) -> bool:
        """True while ``shutdown()`` waits for runs in flight (new runs are refused with
        ``DrainingError``); False before it and once it finished."""
        return self._draining_until is not None

    def _check_open(self) -> None:
        if self._draining_until is not None:
            left = math.ceil(self._draining_until - time.monotonic())
            raise DrainingError(
                "this ExecutionEngineFactory is shutting down: it lets the runs in flight finish "
                "and starts no new ones; retry on another instance or after the restart",
                retry_after=left,
            )
        if self._closed:
            raise EngineClosedError(
                "this ExecutionEngineFactory was shut down; create a new one (or call "
                "configure_execution_engine_factory again)"
            )

    async def create_for_user(
        self, context: UserExecutionContext, *, extensions: Sequence[Any] = ()
    ) -> UserExecutionEngine:
        """A new engine for ``context``'s user. The caller must ``await engine.cleanup()``
        (or use ``user_execution_engine``, which always does).

        ``extensions`` are added after the plugins' extensions, for this engine only."""
        engine = self._admit(context)
        try:
            stack = self._collect_extensions(engine, extensions)
            await stack.start(functools.partial(engine.install_extensions, stack))
        except BaseException:
            self._unadmit(engine)
            raise
        self._metrics["engines_created"] += 1
        self._ensure_sweeper()
        return engine

    def create_for_user_sync(
        self, context: UserExecutionContext, *, extensions: Sequence[Any] = ()
    ) -> UserExecutionEngine:
        """A new engine, created without awaiting: for synchronous callers (the legacy
        constructors). Works with or without a running event loop.

        Extensions are collected now. If none has an async ``start()``, the engine is complete
        on return; otherwise their ``start()`` runs (once, in order) at the beginning of the
        engine's first run, and a failure there fails that ``start_run`` and cleans the engine
        up, as ``create_for_user`` would have. Until then the engine's tool list lacks the
        tools those extensions add. The caller must ``await engine.cleanup()``."""
        engine = self._admit(context)
        try:
            stack = self._collect_extensions(engine, extensions)
        except BaseException:
            self._unadmit(engine)
            raise
        if stack.needs_start:
            engine.defer_extensions(stack)
        else:
            engine.install_extensions(stack)
            stack.mark_started()
        self._metrics["engines_created"] += 1
        with contextlib.suppress(RuntimeError):  # no running loop: the sweeper starts later
            self._ensure_sweeper()
        return engine

    def _admit(self, context: UserExecutionContext, *, counted: bool = True) -> UserExecutionEngine:
        """Check the context and the per-user limit; make and register the engine. An engine
        made for one submitted run is not ``counted`` against ``max_engines_per_user``: the
        limit on those is ``max_concurrent_per_user`` (see ``submit_run``)."""
        self._check_open()
        if not isinstance(context, UserExecutionContext):
            raise InvalidContextError(
                f"create_for_user needs a UserExecutionContext, got {type(context).__name__}; "
                "build one with UserExecutionContext.for_user(user_id)"
            )
        user_id = context.user_id
        engines = self._engines.get(user_id)
        limit = self.engine_settings.max_engines_per_user
        if counted and engines is not None and self._counted(engines) >= limit:
            self._metrics["rejections"] += 1
            raise EngineLimitError(
                f"user {user_id!r} already has {len(engines)} engines (the limit is {limit}); "
                "clean up finished engines (use `async with factory.user_execution_engine(ctx)`) "
                "or raise max_engines_per_user"
            )
        engine = UserExecutionEngine.from_services(FACTORY_ONLY, self.services, context)
        if engines is None:
            engines = self._engines[user_id] = set()
        engines.add(engine)
        return engine

    def _counted(self, engines: set[UserExecutionEngine]) -> int:
        """How many of a user's engines count against ``max_engines_per_user``."""
        if not self._run_engines:
            return len(engines)
        return sum(1 for engine in engines if engine not in self._run_engines)

    async def submit_run(
        self,
        context: UserExecutionContext,
        agent: str,
        input: Mapping[str, Any] | None = None,  # noqa: A002 - the contract's name
        *,
        timeout: float | None = None,
    ) -> RunHandle:
        """Start ``agent`` for ``context``'s user on an engine of its own, which lives exactly
        as long as the run (cleaned up, its extensions closed, once the run has ended), and
        return its handle at once. The run does not depend on the caller: the request that
        submitted it may end, the run goes on. Find, list and cancel it with ``factory.runs``.

        The run id is ``context.run_id`` (a fresh one if that id was used already); the
        thread is ``context.thread_id``. ``timeout`` is the whole-run deadline.

        Raises, before any run exists: ``UnknownAgentError``; ``ToolArgumentError`` for an
        input that is not an object (``check_run_input``) or does not fit the agent;
        ``InvalidContextError``; ``EngineClosedError`` once the factory is shut down;
        ``EngineLimitError`` when the user already has ``max_concurrent_per_user`` submitted
        runs in flight.
        """
        self._check_open()
        if not isinstance(context, UserExecutionContext):
            raise InvalidContextError(
                f"submit_run needs a UserExecutionContext, got {type(context).__name__}; "
                "build one with UserExecutionContext.for_user(user_id)"
            )
        found = self.agents.get(agent) if isinstance(agent, str) else None
        if found is None:
            raise UnknownAgentError(str(agent), self.agents.names())
        found.validate_input(check_run_input(input, f"input for agent {found.name!r}"))
        user_id = context.user_id
        if self.runs.queues:  # a worker executes it (e.g. agentengine-redis, queue = true)
            run_id = (
                context.run_id if self._claim_run_id(user_id, context.run_id) else new_id("run")
            )
            queued = RunRecord(
                run_id=run_id, user_id=user_id, agent=found.name, thread_id=context.thread_id
            )
            return await self.runs.enqueue(queued, dict(input or {}), timeout)
        self.runs.reserve(user_id)
        try:
            run_id = (
                context.run_id if self._claim_run_id(user_id, context.run_id) else new_id("run")
            )
            record = RunRecord(
                run_id=run_id, user_id=user_id, agent=found.name, thread_id=context.thread_id
            )
            engine = self._admit(context, counted=False)
            self._run_engines.add(engine)
            try:
                stack = self._collect_extensions(engine, (RunTracker(record, self.runs),))
                await stack.start(functools.partial(engine.install_extensions, stack))
            except BaseException:
                self._unadmit(engine)
                raise
            self._metrics["engines_created"] += 1
            try:
                handle = await engine.start_run(found.name, input, timeout=timeout, run_id=run_id)
            except BaseException:
                await engine.cleanup()
                raise
        except BaseException:
            self.runs.unreserve(user_id)
            raise
        self.runs.track(record, handle, engine)
        await self.runs.store(record)
        return handle

    def _unadmit(self, engine: UserExecutionEngine) -> None:
        self._run_engines.discard(engine)
        engines = self._engines.get(engine.context.user_id)
        if engines is not None:
            engines.discard(engine)
            if not engines:
                self._engines.pop(engine.context.user_id, None)

    def _collect_extensions(
        self, engine: UserExecutionEngine, extra: Sequence[Any]
    ) -> ExtensionStack:
        return ExtensionStack.collect(
            self.plugins,
            {"context": engine.context, "engine": engine},
            extra,
            user_id=engine.context.user_id,
            close_timeout=self.engine_settings.close_timeout,
            count_error=self._count_error,
        )

    @contextlib.asynccontextmanager
    async def user_execution_engine(
        self, context: UserExecutionContext
    ) -> AsyncIterator[UserExecutionEngine]:
        """``async with factory.user_execution_engine(ctx) as engine:``; always cleaned up."""
        engine = await self.create_for_user(context)
        try:
            yield engine
        finally:
            await engine.cleanup()

    def create_request_scoped_engine(
        self, context: UserExecutionContext
    ) -> contextlib.AbstractAsyncContextManager[UserExecutionEngine]:
        """Alias of ``user_execution_engine`` (the name the request-scoped engine had; every
        engine is request-scoped): on exit its runs are cancelled and every resource it
        opened is released."""
        return self.user_execution_engine(context)

    def _forget_engine(self, engine: UserExecutionEngine) -> None:
        self._run_engines.discard(engine)
        engines = self._engines.get(engine.context.user_id)
        if engines is not None and engine in engines:
            engines.discard(engine)
            if not engines:
                del self._engines[engine.context.user_id]
            self._metrics["engines_cleaned"] += 1

    def engines_for(self, user_id: str) -> list[UserExecutionEngine]:
        """The live engines of ``user_id``."""
        return list(self._engines.get(user_id, ()))

    def _all_engines(self) -> list[UserExecutionEngine]:
        return [e for engines in self._engines.values() for e in engines]

    def _claim_run_id(self, user_id: str, run_id: str) -> bool:
        """True the first time a context's run id is used for a run (remembered for the last
        ``_CLAIMED_RUN_IDS`` uses)."""
        key = (user_id, run_id)
        claimed = self._claimed_run_ids
        if key in claimed:
            return False
        claimed[key] = None
        if len(claimed) > _CLAIMED_RUN_IDS:
            del claimed[next(iter(claimed))]
        return True

    # -- accounting -------------------------------------------------------------------------

    def _count_error(self, source: str) -> None:
        self._errors[source] = self._errors.get(source, 0) + 1

    def _record_run(self, status: RunStatus, duration_ms: float) -> None:
        m = self._metrics
        m["runs"] += 1
        m[_RUN_METRIC[status]] += 1
        self._run_ms_total += duration_ms

    def get_factory_metrics(self) -> dict[str, Any]:
        """Engines created / cleaned / active, rejections, runs by status, the summed run
        duration (divide by ``runs`` for the mean), errors by source."""
        active_engines = sum(len(e) for e in self._engines.values())
        return {
            **self._metrics,
            "engines_active": active_engines,
            "users_active": len(self._engines),
            "runs_active": sum([e.running for e in self._all_engines()]),
            "run_duration_ms_total": round(self._run_ms_total, 3),
            "errors": dict(self._errors),
            "plugin_errors": {i.name: i.error for i in self.plugins.errors},
            "closed": self._closed,
        }

    # -- idle sweeping ----------------------------------------------------------------------

    def _ensure_sweeper(self) -> None:
        ttl = self.engine_settings.idle_ttl
        if ttl is None or self._sweeper is not None:
            return
        self._sweeper = asyncio.get_running_loop().create_task(
            self._sweep_forever(ttl), name="agentengine-idle-sweeper"
        )

    async def _sweep_forever(self, ttl: float) -> None:
        interval = max(min(ttl / 2, 60.0), 0.01)
        while not self._closed:
            await asyncio.sleep(interval)
            # Shutdown cancels the sweeper only while it sleeps: an engine cleanup cut short
            # would leave its extensions unclosed.
            self._sweeping = True
            try:
                await self.sweep_idle()
            finally:
                self._sweeping = False

    async def sweep_idle(self, ttl: float | None = None) -> int:
        """Clean up engines with no active run that were unused for ``ttl`` seconds (the
        factory's ``idle_ttl`` by default). Returns how many were cleaned."""
        limit = self.engine_settings.idle_ttl if ttl is None else ttl
        if limit is None:
            return 0
        now = time.monotonic()
        idle = [e for e in self._all_engines() if not e.running and now - e.last_used >= limit]
        for engine in idle:
            _log.info(
                "cleaning up idle engine",
                user_id=engine.context.user_id,
                idle_s=round(now - engine.last_used, 1),
            )
            await engine.cleanup()
        self._metrics["engines_swept"] += len(idle)
        return len(idle)

    # -- shutdown -------------------------------------------------------------------------------

    async def shutdown(self, drain_timeout: float | None = None) -> None:
        """Refuse new engines, wait up to ``drain_timeout`` for active runs, then cancel every
        run still going at once (each still ends with its terminal event; one that has not
        ended ``close_timeout`` seconds later is abandoned with status ``cancelled``), clean
        up every engine concurrently (extension ``close()`` calls bounded by
        ``close_timeout``) and close the event sink (bounded too). Returns within
        ``drain_timeout + 3 * close_timeout + 1`` seconds whatever agents and plugins do.
        Idempotent. While it runs, creating an engine raises ``DrainingError`` (an
        ``EngineClosedError``: answer 503 with ``Retry-After``), and ``EngineClosedError``
        once it finished. ``agentengine.drain_on_signal`` runs it before a server closes its
        connections."""
        if self._closed:
            return
        self._closed = True
        es = self.engine_settings
        deadline = es.drain_timeout if drain_timeout is None else drain_timeout
        grace = es.close_timeout
        self._draining_until = time.monotonic() + deadline + grace
        try:
            await self._shutdown(deadline, grace)
        finally:
            self._draining_until = None

    async def _shutdown(self, deadline: float, grace: float) -> None:
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            if not self._sweeping:
                sweeper.cancel()
            await asyncio.wait((sweeper,), timeout=grace)
        runs = self._active_runs()
        if runs and not await wait_runs(runs, deadline):
            # Runs the drain left, and any an open engine started meanwhile: all at once.
            left = self._active_runs()
            _log.warning("drain deadline passed; cancelling runs", runs=len(left))
            for handle in left:
                handle.cancel_nowait()
            await wait_runs(left, None)  # bounded: each is abandoned after close_timeout
        engines = self._all_engines()
        if engines:
            cleanups = [asyncio.ensure_future(contained(e.cleanup)) for e in engines]
            _, pending = await asyncio.wait(cleanups, timeout=grace + 1.0)
            for engine, cleanup in zip(engines, cleanups, strict=True):
                if cleanup in pending:
                    _log.error(
                        "engine did not finish cleaning up in time; abandoned",
                        user_id=engine.context.user_id,
                        close_timeout=grace,
                    )
                    self._forget_engine(engine)
        # Submitted runs have ended by now: let their records take the final status.
        await self.runs.wait_finished(grace)
        closing = asyncio.ensure_future(contained(self.events.aclose))
        done, _ = await asyncio.wait((closing,), timeout=grace)
        if not done:
            _log.error("event sink did not close in time; abandoned", close_timeout=grace)
        elif (exc := closing.result()) is not None:
            self._count_error("sink")
            _log.error("event sink failed to close", error=describe_error(exc))

    def _active_runs(self) -> list[RunHandle]:
        return [handle for engine in self._all_engines() for handle in engine.active_runs()]

    async def __aenter__(self) -> ExecutionEngineFactory:
        self._check_open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()

    def __repr__(self) -> str:
        return (
            f"<ExecutionEngineFactory agents={len(self.agents)} tools={len(self.tools)} "
            f"engines={sum(len(e) for e in self._engines.values())}>"
        )


# -- the process default ----------------------------------------------------------------------

_default_factory: ExecutionEngineFactory | None = None


def configure_execution_engine_factory(**factory_kwargs: Any) -> ExecutionEngineFactory:
    """Build the process-wide default factory with these ``ExecutionEngineFactory`` arguments.

    Replacing a default that still has engines raises: shut it down first
    (``await reset_execution_engine_factory().shutdown()``).
    """
    global _default_factory  # noqa: PLW0603 - the process default is the point
    previous = _default_factory
    if previous is not None and not previous.closed and previous._engines:
        raise AgentEngineError(
            "the default ExecutionEngineFactory still has live engines; shut it down first "
            "(await reset_execution_engine_factory().shutdown())"
        )
    _default_factory = ExecutionEngineFactory(**factory_kwargs)
    return _default_factory


def get_execution_engine_factory() -> ExecutionEngineFactory:
    """The process-wide default factory (built with defaults on first use)."""
    global _default_factory  # noqa: PLW0603
    if _default_factory is None or _default_factory.closed:
        _default_factory = ExecutionEngineFactory()
    return _default_factory


def reset_execution_engine_factory() -> ExecutionEngineFactory | None:
    """Forget the process default (for tests); returns it so the caller can shut it down."""
    global _default_factory
    previous, _default_factory = _default_factory, None
    return previous
