"""agentengine.legacy: the old names warn, build factory-made engines, and keep working."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import pkgutil
import re
import sys
import warnings
from collections.abc import AsyncIterator, Iterator
from typing import Any

import agentengine
import pytest
from agentengine import (
    AgentEngineError,
    ExecutionEngineFactory,
    PipelineStep,
    PluginLoadError,
    RegistrationError,
    RunContext,
    RunStatus,
    Settings,
    UserExecutionContext,
    UserExecutionEngine,
    agent,
    configure_execution_engine_factory,
    get_execution_engine_factory,
    hookimpl,
    legacy,
    reset_execution_engine_factory,
    tool,
)
from agentengine.testing import assert_event_sequence, assert_isolated, capture_logs

FULL_SEQUENCE = [
    "agent_started",
    "agent_thinking",
    "tool_executing",
    "tool_completed",
    "agent_completed",
]


@tool
async def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@agent(name="calc")
async def calc(run: RunContext, text: str = "sum") -> str:
    """Add 1 and 2."""
    await run.think("adding")
    total = await run.call_tool("add", {"a": 1, "b": 2})
    return f"{text}: {total}"


class CalcPlugin:
    name = "calc"

    @hookimpl
    def agentengine_register_tools(self, registry: Any) -> None:
        registry.add(add)

    @hookimpl
    def agentengine_register_agents(self, registry: Any) -> None:
        registry.add(calc)


def isolated_kwargs(**extra: Any) -> dict[str, Any]:
    return {"load_entrypoints": False, "config": Settings(), "environ": {}, **extra}


@pytest.fixture
async def default_factory() -> AsyncIterator[ExecutionEngineFactory]:
    """The process default, with the calc plugin; shut down and forgotten afterwards."""
    previous = reset_execution_engine_factory()
    if previous is not None:
        await previous.shutdown()
    factory = configure_execution_engine_factory(plugins=[CalcPlugin()], **isolated_kwargs())
    try:
        yield factory
    finally:
        await factory.shutdown()
        reset_execution_engine_factory()


@contextlib.contextmanager
def deprecation(name: str, replacement: str) -> Iterator[list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught
    deprecations = [w for w in caught if issubclass(w.category, DeprecationWarning)]
    assert len(deprecations) == 1, [str(w.message) for w in caught]
    message = str(deprecations[0].message)
    assert message.startswith(f"{name} is deprecated"), message
    assert replacement in message, message
    assert deprecations[0].filename == __file__, "stacklevel must point at the caller"


def caller_line(caught: list[warnings.WarningMessage]) -> int:
    return next(w.lineno for w in caught if issubclass(w.category, DeprecationWarning))


REPLACEMENTS = {
    "ExecutionEngine": "factory.user_execution_engine(ctx)",
    "RequestScopedExecutionEngine": "factory.create_request_scoped_engine(ctx)",
    "ExecutionEngineConsolidated": "agentengine_engine_extensions",
    "IsolatedExecutionEngine": "max_concurrent_per_user",
    "BaseExecutionEngine": "factory.user_execution_engine(ctx)",
    "ToolExecutionEngine": "around_tool",
}


@pytest.mark.parametrize("old_name", sorted(REPLACEMENTS))
async def test_each_engine_name_warns_and_returns_a_working_factory_made_engine(
    default_factory: ExecutionEngineFactory, old_name: str
) -> None:
    old = getattr(legacy, old_name)
    ctx = UserExecutionContext.for_user("alice")
    with deprecation(old_name, REPLACEMENTS[old_name]) as caught:
        engine = old(None, None, ctx)
    line = inspect.currentframe().f_lineno - 1  # type: ignore[union-attr]
    assert caller_line(caught) == line
    assert type(engine) is UserExecutionEngine
    assert isinstance(engine, old)
    assert engine in default_factory.engines_for("alice")
    result = await engine.execute_agent("calc", {"text": "sum"})
    assert result.status is RunStatus.SUCCEEDED
    assert result.output == "sum: 3"
    assert_event_sequence(result, FULL_SEQUENCE)
    pipeline = await engine.execute_pipeline([PipelineStep("calc"), ("calc", {"text": "again"})])
    assert [r.output for r in pipeline] == ["sum: 3", "again: 3"]
    assert engine.get_execution_stats()["succeeded"] == 3
    await engine.shutdown()
    assert engine.closed
    await engine.cleanup()  # idempotent
    assert default_factory.engines_for("alice") == []


async def test_mcp_enhanced_engine_needs_the_mcp_distribution(default_factory) -> None:
    ctx = UserExecutionContext.for_user("alice")
    if importlib.util.find_spec("agentengine_mcp") is None:
        with (
            deprecation("MCPEnhancedExecutionEngine", "agentengine-mcp"),
            pytest.raises(PluginLoadError, match=r"install the agentengine-mcp distribution"),
        ):
            legacy.MCPEnhancedExecutionEngine(None, None, ctx)
    else:
        with (
            deprecation("MCPEnhancedExecutionEngine", "agentengine-mcp"),
            pytest.raises(PluginLoadError, match=r"this factory did not load it"),
        ):
            legacy.MCPEnhancedExecutionEngine(None, None, ctx)
    assert default_factory.engines_for("alice") == []


async def test_mcp_enhanced_engine_uses_the_factorys_mcp_plugin() -> None:
    class FakeMcp:  # stands in for the mcp plugin's registration only
        name = "mcp"

        @hookimpl
        def agentengine_register_tools(self, registry: Any) -> None:
            @tool(name="time.now")
            async def now() -> str:
                """The time."""
                return "12:00"

            registry.add(now)

    async with ExecutionEngineFactory(
        plugins=[CalcPlugin(), FakeMcp()], **isolated_kwargs()
    ) as factory:
        with deprecation("MCPEnhancedExecutionEngine", "agentengine-mcp"):
            engine = legacy.MCPEnhancedExecutionEngine(
                None, None, UserExecutionContext.for_user("alice"), factory=factory
            )
        assert "time.now" in engine.tool_names()
        await engine.cleanup()


async def test_request_scoped_engine_has_the_request_scope_plugin() -> None:
    opened: list[str] = []

    class Db:
        name = "db"

        @hookimpl
        def agentengine_register_resources(self, registry: Any) -> None:
            @contextlib.asynccontextmanager
            async def conn(run: RunContext) -> Any:
                opened.append(run.user_id)
                yield f"conn-of-{run.user_id}"
                opened.append("closed")

            registry.add("db", conn)

        @hookimpl
        def agentengine_register_agents(self, registry: Any) -> None:
            @agent(name="query")
            async def query(run: RunContext) -> str:
                """Use the db."""
                return str(await run.scope["db"])

            registry.add(query)

    async with ExecutionEngineFactory(plugins=[Db()], **isolated_kwargs()) as factory:
        with deprecation("RequestScopedExecutionEngine", "create_request_scoped_engine"):
            engine = legacy.RequestScopedExecutionEngine(
                None, None, UserExecutionContext.for_user("alice"), factory=factory
            )
        result = await engine.execute_agent("query", {})
        await engine.cleanup()
    assert result.output == "conn-of-alice"
    assert opened == ["alice", "closed"]

    disabled = ExecutionEngineFactory(
        **isolated_kwargs(environ={"AGENTENGINE_DISABLE_PLUGINS": "request_scope"})
    )
    with (
        deprecation("RequestScopedExecutionEngine", "create_request_scoped_engine"),
        pytest.raises(PluginLoadError, match="needs the 'request_scope' plugin"),
    ):
        legacy.RequestScopedExecutionEngine(
            None, None, UserExecutionContext.for_user("alice"), factory=disabled
        )
    await disabled.shutdown()


async def test_without_a_context_each_engine_gets_a_fresh_anonymous_user(
    default_factory,
) -> None:
    with capture_logs() as logs:
        with deprecation("ExecutionEngine", "user_execution_engine"):
            first = legacy.ExecutionEngine(None)
        with deprecation("ExecutionEngine", "user_execution_engine"):
            second = legacy.ExecutionEngine(None)
    assert first.user_id != second.user_id
    for engine in (first, second):
        assert engine.user_id.startswith("anonymous-")
        assert engine.context.metadata["anonymous"] is True
        assert engine.context.metadata["created_by"] == "agentengine.legacy.ExecutionEngine"
    warned = [e for e in logs if e.get("anonymous") is True]
    assert [e["user_id"] for e in warned] == [first.user_id, second.user_id]
    assert all(e["log_level"] == "warning" for e in warned)
    results = await asyncio.gather(first.execute_agent("calc"), second.execute_agent("calc"))
    assert_isolated(
        {e.user_id: list(r.events) for e, r in zip((first, second), results, strict=True)}
    )
    await first.cleanup()
    await second.cleanup()


async def test_a_registry_mapping_adds_its_agents_to_the_factory(default_factory) -> None:
    async def greet(run: RunContext, name: str = "you") -> str:
        """Greet."""
        return f"hi {name}"

    with deprecation("ExecutionEngine", "user_execution_engine"):
        engine = legacy.ExecutionEngine(
            {"greeter": greet, "calc": calc}, None, UserExecutionContext.for_user("alice")
        )
    assert default_factory.agents.owner("greeter") == "legacy"
    result = await engine.execute_agent("greeter", {"name": "bob"})
    assert result.output == "hi bob"
    await engine.cleanup()

    async def other_calc(run: RunContext) -> str:
        """Not the factory's calc."""
        return "?"

    with (
        deprecation("ExecutionEngine", "user_execution_engine"),
        pytest.raises(RegistrationError, match="not the agent the factory already has"),
    ):
        legacy.ExecutionEngine({"calc": other_calc}, None, UserExecutionContext.for_user("bob"))
    with (
        deprecation("ExecutionEngine", "user_execution_engine"),
        pytest.raises(TypeError, match="registry must be an AgentRegistry, a mapping"),
    ):
        legacy.ExecutionEngine(42, None, UserExecutionContext.for_user("bob"))
    with (
        deprecation("ExecutionEngine", "user_execution_engine"),
        pytest.raises(AgentEngineError, match="user_context must be a UserExecutionContext"),
    ):
        legacy.ExecutionEngine(None, None, {"user_id": "bob"})
    assert default_factory.engines_for("bob") == []


class OldBridge:
    """An old-style AgentWebSocketBridge: one coroutine per event type."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    async def notify_agent_started(self, run_id: str, agent_name: str, context: Any) -> bool:
        await asyncio.sleep(0)
        self.calls.append(("started", run_id, agent_name, context["user_id"]))
        return True

    async def notify_agent_thinking(
        self, run_id: str, agent_name: str, reasoning: str, step: Any
    ) -> bool:
        self.calls.append(("thinking", run_id, reasoning, step))
        return True

    async def notify_tool_executing(
        self, run_id: str, agent_name: str, tool_name: str, params: Any
    ) -> bool:
        self.calls.append(("tool_executing", run_id, tool_name, params))
        return True

    async def notify_tool_completed(
        self, run_id: str, agent_name: str, tool_name: str, result: Any, ms: Any
    ) -> bool:
        self.calls.append(("tool_completed", run_id, tool_name, result["result"]))
        return True

    async def notify_agent_completed(
        self, run_id: str, agent_name: str, result: Any, ms: Any
    ) -> bool:
        self.calls.append(("completed", run_id, result["status"], result["output"]))
        return True


async def test_an_old_style_bridge_receives_every_event_in_order(default_factory) -> None:
    bridge = OldBridge()
    with deprecation("UserExecutionEngine.create_from_legacy()", "create_for_user"):
        engine = UserExecutionEngine.create_from_legacy(
            None, bridge, UserExecutionContext.for_user("alice")
        )
    result = await engine.execute_agent("calc", {"text": "sum"})
    await engine.cleanup()  # drains the bridge
    run_id = result.run_id
    assert bridge.calls == [
        ("started", run_id, "calc", "alice"),
        ("thinking", run_id, "adding", 1),
        ("tool_executing", run_id, "add", {"a": 1, "b": 2}),
        ("tool_completed", run_id, "add", 3),
        ("completed", run_id, "succeeded", "sum: 3"),
    ]


async def test_a_callable_bridge_gets_wire_dicts_and_a_bad_bridge_is_refused(
    default_factory,
) -> None:
    received: list[dict[str, Any]] = []
    with deprecation("UserExecutionEngine.from_registry()", "create_for_user"):
        engine = UserExecutionEngine.from_registry(
            {}, received.append, UserExecutionContext.for_user("alice")
        )
    result = await engine.execute_agent("calc")
    await engine.cleanup()
    assert [e["type"] for e in received] == FULL_SEQUENCE
    assert received == [e.to_wire() for e in result.events]
    with (
        deprecation("ExecutionEngine", "user_execution_engine"),
        pytest.raises(TypeError, match="missing: notify_agent_started"),
    ):
        legacy.ExecutionEngine(None, object(), UserExecutionContext.for_user("alice"))


async def test_without_a_bridge_events_go_to_the_factory_sink(default_factory) -> None:
    with deprecation("ExecutionEngine", "user_execution_engine"):
        engine = legacy.ExecutionEngine(None, None, UserExecutionContext.for_user("alice"))
    result = await engine.execute_agent("calc")
    await engine.cleanup()
    seen = []
    async for item in default_factory.events.subscribe("alice"):
        seen.append(item)
        if getattr(item, "terminal", False):
            break
    assert [e.type for e in seen] == FULL_SEQUENCE
    assert [e.run_id for e in seen] == [result.run_id] * 5


def test_a_legacy_engine_is_made_without_a_running_loop() -> None:
    factory = ExecutionEngineFactory(plugins=[CalcPlugin()], **isolated_kwargs())
    with deprecation("ExecutionEngine", "user_execution_engine"):
        engine = legacy.ExecutionEngine(
            None, None, UserExecutionContext.for_user("alice"), factory=factory
        )

    async def use() -> Any:
        try:
            return await engine.execute_agent("calc")
        finally:
            await factory.shutdown()

    result = asyncio.run(use())
    assert result.output == "sum: 3"
    assert engine.closed


class Starting:
    """A plugin whose extension must start (asynchronously) before runs."""

    name = "starting"

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.starts = 0
        self.closes = 0

    @hookimpl
    def agentengine_engine_extensions(self) -> Any:
        plugin = self

        class Ext:
            async def start(self) -> None:
                plugin.starts += 1
                await asyncio.sleep(0.01)
                if plugin.fail:
                    raise ConnectionError("server unreachable")

            async def close(self) -> None:
                plugin.closes += 1

            def tools(self) -> list[Any]:
                @tool(name="started_tool")
                async def started_tool() -> int:
                    """Only there after start."""
                    return plugin.starts

                return [started_tool]

        return Ext()


async def test_extensions_that_start_asynchronously_start_once_before_the_first_run() -> None:
    plugin = Starting()
    async with ExecutionEngineFactory(plugins=[CalcPlugin(), plugin], **isolated_kwargs()) as f:
        with deprecation("ExecutionEngine", "user_execution_engine"):
            engine = legacy.ExecutionEngine(
                None, None, UserExecutionContext.for_user("a"), factory=f
            )
        assert plugin.starts == 0
        assert "started_tool" not in engine.tool_names()
        results = await asyncio.gather(*(engine.execute_agent("calc") for _ in range(3)))
        assert [r.status for r in results] == [RunStatus.SUCCEEDED] * 3
        assert plugin.starts == 1
        assert "started_tool" in engine.tool_names()
        await engine.cleanup()
        assert plugin.closes == 1


async def test_a_deferred_start_that_fails_fails_the_run_call_and_cleans_up() -> None:
    plugin = Starting(fail=True)
    async with ExecutionEngineFactory(plugins=[CalcPlugin(), plugin], **isolated_kwargs()) as f:
        with deprecation("ExecutionEngine", "user_execution_engine"):
            engine = legacy.ExecutionEngine(
                None, None, UserExecutionContext.for_user("a"), factory=f
            )
        with pytest.raises(AgentEngineError, match=r"failed to start its extension.*unreachable"):
            await engine.execute_agent("calc")
        assert engine.closed
        assert f.engines_for("a") == []
        with pytest.raises(AgentEngineError, match="was cleaned up"):
            await engine.execute_agent("calc")


async def test_factory_names_return_the_one_factory_class(default_factory) -> None:
    for name in legacy.LEGACY_FACTORY_NAMES:
        old = getattr(legacy, name)
        with deprecation(name, "ExecutionEngineFactory(...)"):
            made = old()
        assert made is get_execution_engine_factory()
        assert isinstance(made, old)
    with deprecation("UnifiedExecutionEngineFactory", "ExecutionEngineFactory(...)"):
        custom = legacy.UnifiedExecutionEngineFactory(
            plugins=[CalcPlugin()], run_timeout=7.0, **isolated_kwargs()
        )
    assert type(custom) is ExecutionEngineFactory
    assert custom is not default_factory
    assert custom.engine_settings.run_timeout == 7.0
    await custom.shutdown()
    with (
        deprecation("ExecutionFactory", "ExecutionEngineFactory(...)"),
        pytest.raises(TypeError, match="database_session_manager is no longer a factory argument"),
    ):
        legacy.ExecutionFactory(database_session_manager=object())


async def test_a_factory_bridge_gets_the_events_of_every_engine() -> None:
    received: list[dict[str, Any]] = []
    with deprecation("create_execution_engine_factory()", "ExecutionEngineFactory(...)"):
        factory = legacy.create_execution_engine_factory(
            received.append, plugins=[CalcPlugin()], **isolated_kwargs()
        )
    async with factory:
        for user in ("alice", "bob"):
            async with factory.user_execution_engine(UserExecutionContext.for_user(user)) as e:
                await e.execute_agent("calc")
    assert [(e["user_id"], e["type"]) for e in received] == [
        (user, kind) for user in ("alice", "bob") for kind in FULL_SEQUENCE
    ]


async def test_legacy_context_manager_functions(default_factory) -> None:
    ctx = UserExecutionContext.for_user("alice")
    with deprecation("agentengine.legacy.user_execution_engine(ctx)", "user_execution_engine"):
        manager = legacy.user_execution_engine(ctx)
    async with manager as engine:
        assert (await engine.execute_agent("calc")).succeeded
    assert engine.closed
    with deprecation(
        "agentengine.legacy.create_request_scoped_engine(ctx)", "create_request_scoped_engine"
    ):
        manager = legacy.create_request_scoped_engine(ctx.with_run())
    async with manager as engine:
        handle = await engine.start_run("calc")
    assert (await handle.result()).status in {RunStatus.SUCCEEDED, RunStatus.CANCELLED}
    assert default_factory.engines_for("alice") == []


def test_legacy_names_cannot_be_subclassed() -> None:
    with pytest.raises(TypeError, match="cannot be subclassed; write a plugin"):

        class Mine(legacy.ExecutionEngine):  # type: ignore[misc,valid-type]
            pass


def _package_classes() -> set[type]:
    found: set[type] = set()
    for module_info in pkgutil.walk_packages(agentengine.__path__, "agentengine."):
        if module_info.name in {"agentengine.testing"} and "pytest" not in sys.modules:
            continue
        if module_info.name == "agentengine.logging":  # a deprecated alias of agentengine.log
            continue
        module = importlib.import_module(module_info.name)
        for value in vars(module).values():
            if inspect.isclass(value) and value.__module__.startswith("agentengine"):
                found.add(value)
    return found


def test_the_package_defines_exactly_one_engine_class_and_one_factory_class() -> None:
    classes = _package_classes()
    engines = {c for c in classes if callable(getattr(c, "execute_agent", None))}
    factories = {c for c in classes if callable(getattr(c, "create_for_user", None))}
    assert engines == {UserExecutionEngine}
    assert factories == {ExecutionEngineFactory}
    for name in (*legacy.LEGACY_ENGINE_NAMES, *legacy.LEGACY_FACTORY_NAMES):
        value = getattr(legacy, name)
        assert not inspect.isclass(value), f"{name} must be a thin constructor, not a class"
        assert name in legacy.__all__


async def test_an_agent_registry_object_is_accepted(default_factory) -> None:
    from agentengine import AgentRegistry

    @agent(name="echo")
    async def echo(run: RunContext, text: str) -> str:
        """Echo."""
        return text

    registry = AgentRegistry()
    registry.add(echo)
    registry.add(calc)
    with deprecation("ExecutionEngine", "user_execution_engine"):
        engine = legacy.ExecutionEngine(registry, None, UserExecutionContext.for_user("alice"))
    assert (await engine.execute_agent("echo", {"text": "x"})).output == "x"
    await engine.cleanup()


async def test_concurrent_legacy_engines_with_their_own_bridges_stay_isolated(
    default_factory,
) -> None:
    users = [f"user-{n}" for n in range(8)]
    bridges = {user: OldBridge() for user in users}
    engines = {}
    for user in users:
        with deprecation("IsolatedExecutionEngine", "max_concurrent_per_user"):
            engines[user] = legacy.IsolatedExecutionEngine(
                None, bridges[user], UserExecutionContext.for_user(user)
            )

    async def work(user: str) -> list[Any]:
        engine = engines[user]
        results = await asyncio.gather(*(engine.execute_agent("calc") for _ in range(3)))
        await engine.cleanup()
        return list(results)

    outcomes = await asyncio.gather(*(work(user) for user in users))
    for user, results in zip(users, outcomes, strict=True):
        run_ids = {r.run_id for r in results}
        assert len(run_ids) == 3
        calls = bridges[user].calls
        assert len(calls) == 15
        assert {call[1] for call in calls} == run_ids  # only this user's runs
        assert [c[3] for c in calls if c[0] == "started"] == [user] * 3
    assert_isolated(
        {
            user: [e for r in results for e in r.events]
            for user, results in zip(users, outcomes, strict=True)
        }
    )


async def test_cleanup_during_a_deferred_start_closes_what_started() -> None:
    plugin = Starting()
    async with ExecutionEngineFactory(plugins=[CalcPlugin(), plugin], **isolated_kwargs()) as f:
        with deprecation("ExecutionEngine", "user_execution_engine"):
            engine = legacy.ExecutionEngine(
                None, None, UserExecutionContext.for_user("a"), factory=f
            )
        first_run = asyncio.create_task(engine.execute_agent("calc"))
        await asyncio.sleep(0)  # the run is now starting the extension (it sleeps 10 ms)
        assert plugin.starts == 1
        await engine.cleanup()
        with pytest.raises(AgentEngineError, match="cleaned up while starting"):
            await first_run
        assert plugin.closes == 1
        assert f.engines_for("a") == []


# A replacement named in full: the class and its method (``ExecutionEngineFactory.
# create_request_scoped_engine(``), never a bare ``factory.create_request_scoped_engine``.
_FULL_METHOD = r"\b(?:ExecutionEngineFactory|UserExecutionEngine)\.[a-z_]+\("


def _deprecation_text(call: Any) -> str:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with contextlib.suppress(Exception):  # a missing plugin is refused after the warning
            made = call()
            if isinstance(made, UserExecutionEngine):
                asyncio.get_running_loop().create_task(made.cleanup())
    texts = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]
    assert len(texts) == 1, texts
    return texts[0]


async def test_every_deprecation_names_the_replacement_class_and_method_in_full(
    default_factory: ExecutionEngineFactory,
) -> None:
    from agentengine.legacy.names import LEGACY_ENGINE_NAMES, LEGACY_FACTORY_NAMES

    ctx = UserExecutionContext.for_user("alice")
    engine_calls: dict[str, Any] = {
        name: (lambda name=name: getattr(legacy, name)(None, None, ctx))
        for name in LEGACY_ENGINE_NAMES
    }
    engine_calls |= {
        "user_execution_engine": lambda: legacy.user_execution_engine(ctx),
        "create_request_scoped_engine": lambda: legacy.create_request_scoped_engine(ctx),
        "create_from_legacy": lambda: UserExecutionEngine.create_from_legacy(None, None, ctx),
        "from_registry": lambda: UserExecutionEngine.from_registry(None, None, ctx),
    }
    for name, call in engine_calls.items():
        text = _deprecation_text(call)
        assert re.search(_FULL_METHOD, text), f"{name}: {text}"
    factory_calls: dict[str, Any] = {
        name: getattr(legacy, name) for name in LEGACY_FACTORY_NAMES
    } | {"create_execution_engine_factory": legacy.create_execution_engine_factory}
    for name, call in factory_calls.items():
        text = _deprecation_text(call)
        assert "ExecutionEngineFactory(...)" in text, f"{name}: {text}"
    assert "ExecutionEngineFactory.create_request_scoped_engine(ctx)" in _deprecation_text(
        engine_calls["RequestScopedExecutionEngine"]
    )
    await asyncio.sleep(0)  # let the cleanups scheduled above run
    for engine in default_factory.engines_for("alice"):
        await engine.cleanup()
