"""The factory: sole creation authority, limits, sweeping, metrics, defaults, garbage."""

from __future__ import annotations

import asyncio
import gc
import weakref
from pathlib import Path

import agentengine
import pytest
from agentengine import (
    EngineClosedError,
    EngineLimitError,
    ExecutionEngineFactory,
    InvalidContextError,
    RunStatus,
    UnknownAgentError,
    UserExecutionContext,
    UserExecutionEngine,
)
from outcome_agents import OutcomesPlugin


def make_factory(**kwargs) -> ExecutionEngineFactory:  # type: ignore[no-untyped-def]
    return ExecutionEngineFactory(plugins=[OutcomesPlugin()], load_entrypoints=False, **kwargs)


def test_direct_construction_names_the_factory() -> None:
    with pytest.raises(TypeError, match="ExecutionEngineFactory"):
        UserExecutionEngine()
    with pytest.raises(TypeError, match="ExecutionEngineFactory"):
        UserExecutionEngine(UserExecutionContext.for_user("alice"))


async def test_create_for_user_rejects_non_context() -> None:
    async with make_factory() as factory:
        with pytest.raises(InvalidContextError, match="UserExecutionContext"):
            await factory.create_for_user({"user_id": "alice"})  # type: ignore[arg-type]


async def test_max_engines_per_user_does_not_affect_other_users() -> None:
    async with make_factory(max_engines_per_user=2) as factory:
        a = [
            await factory.create_for_user(UserExecutionContext.for_user("alice")) for _ in range(2)
        ]
        with pytest.raises(EngineLimitError, match="'alice' already has 2 engines"):
            await factory.create_for_user(UserExecutionContext.for_user("alice"))
        bob = await factory.create_for_user(UserExecutionContext.for_user("bob"))
        assert (await bob.execute_agent("calc", {"text": "b"})).status is RunStatus.SUCCEEDED
        await a[0].cleanup()
        again = await factory.create_for_user(UserExecutionContext.for_user("alice"))
        metrics = factory.get_factory_metrics()
        assert metrics["rejections"] == 1
        assert metrics["engines_created"] == 4
        assert metrics["engines_cleaned"] == 1
        assert metrics["engines_active"] == 3
        for engine in (a[1], bob, again):
            await engine.cleanup()


async def test_closed_engine_and_factory_refuse_work() -> None:
    factory = make_factory()
    engine = await factory.create_for_user(UserExecutionContext.for_user("alice"))
    await engine.cleanup()
    with pytest.raises(EngineClosedError, match="cleaned up"):
        await engine.execute_agent("calc", {"text": "x"})
    await factory.shutdown()
    with pytest.raises(EngineClosedError, match="shut down"):
        await factory.create_for_user(UserExecutionContext.for_user("alice"))


async def test_unknown_agent_lists_available() -> None:
    async with make_factory() as factory:
        async with factory.user_execution_engine(UserExecutionContext.for_user("al")) as engine:
            with pytest.raises(UnknownAgentError, match=r"'nope'.*available agents: .*calc"):
                await engine.execute_agent("nope")


async def test_idle_engines_are_swept() -> None:
    async with make_factory(idle_ttl=0.05) as factory:
        idle = await factory.create_for_user(UserExecutionContext.for_user("alice"))
        busy = await factory.create_for_user(UserExecutionContext.for_user("bob"))
        handle = await busy.start_run("sleeper", {"seconds": 0.5})
        for _ in range(100):
            await asyncio.sleep(0.02)
            if idle.closed:
                break
        assert idle.closed
        assert not busy.closed, "an engine with an active run is never swept"
        assert (await handle.result()).status is RunStatus.SUCCEEDED
        assert factory.get_factory_metrics()["engines_swept"] >= 1


async def test_cleaned_up_engines_are_garbage_collected() -> None:
    async with make_factory() as factory:
        refs = []
        for i in range(20):
            async with factory.user_execution_engine(UserExecutionContext.for_user(f"u{i}")) as e:
                result = await e.execute_agent("calc", {"text": "x"})
                assert result.succeeded
                handle = await e.start_run("sleeper", {"seconds": 30})
                refs.append(weakref.ref(e))
            assert (await handle.result()).status is RunStatus.CANCELLED
            del e, handle, result
        gc.collect()
        alive = [r for r in refs if r() is not None]
        assert not alive, f"{len(alive)} engines still referenced: {gc.get_referrers(alive[0]())}"


async def test_execute_pipeline_stops_at_first_failure_unless_allowed() -> None:
    async with make_factory() as factory:
        async with factory.user_execution_engine(UserExecutionContext.for_user("al")) as engine:
            results = await engine.execute_pipeline(
                [("calc", {"text": "a"}), "agent_raises", ("calc", {"text": "never"})]
            )
            assert [r.status for r in results] == [RunStatus.SUCCEEDED, RunStatus.FAILED]
            results = await engine.execute_pipeline(
                [
                    agentengine.PipelineStep("agent_raises", continue_on_failure=True),
                    agentengine.PipelineStep(
                        "calc", lambda prev: {"text": f"after {prev[-1].status}"}
                    ),
                ]
            )
            assert [r.status for r in results] == [RunStatus.FAILED, RunStatus.SUCCEEDED]
            assert results[1].output == "after failed: 3"
            assert len({r.run_id for r in results}) == 2
            stats = engine.get_execution_stats()
    assert stats["total"] == 4 and stats["succeeded"] == 2 and stats["failed"] == 2


async def test_first_run_uses_the_context_run_id_then_fresh_ids() -> None:
    ctx = UserExecutionContext(user_id="alice", thread_id="t-1", run_id="r-1")
    async with make_factory() as factory, factory.user_execution_engine(ctx) as engine:
        first = await engine.execute_agent("calc", {"text": "x"})
        second = await engine.execute_agent("calc", {"text": "y"})
    assert first.run_id == "r-1"
    assert second.run_id != "r-1"
    assert {e.thread_id for e in first.events + second.events} == {"t-1"}


async def test_process_default_factory() -> None:
    agentengine.reset_execution_engine_factory()
    try:
        configured = agentengine.configure_execution_engine_factory(
            plugins=[OutcomesPlugin()], load_entrypoints=False, max_engines_per_user=1
        )
        assert agentengine.get_execution_engine_factory() is configured
        engine = await configured.create_for_user(UserExecutionContext.for_user("alice"))
        with pytest.raises(agentengine.AgentEngineError, match="live engines"):
            agentengine.configure_execution_engine_factory(load_entrypoints=False)
        await engine.cleanup()
    finally:
        previous = agentengine.reset_execution_engine_factory()
        if previous is not None:
            await previous.shutdown()
    fresh = agentengine.get_execution_engine_factory()
    assert fresh is not configured
    agentengine.reset_execution_engine_factory()
    await fresh.shutdown()


def test_invalid_factory_arguments_are_named() -> None:
    with pytest.raises(agentengine.AgentEngineError, match="max_concurrent_per_user"):
        ExecutionEngineFactory(load_entrypoints=False, max_concurrent_per_user=0)


def test_engine_settings_from_config_file_and_environment(tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "agentengine.toml"
    config.write_text("[engine]\nrun_timeout = 12.5\nmax_engines_per_user = 3\n")
    factory = ExecutionEngineFactory(
        load_entrypoints=False,
        config=config,
        environ={"AGENTENGINE_ENGINE__RUN_TIMEOUT": "7"},
    )
    assert factory.engine_settings.run_timeout == 7.0
    assert factory.engine_settings.max_engines_per_user == 3
    explicit = ExecutionEngineFactory(load_entrypoints=False, config=config, run_timeout=1.0)
    assert explicit.engine_settings.run_timeout == 1.0
    config.write_text("[engine]\nrun_timeout = -1\n")
    with pytest.raises(agentengine.ConfigError, match=r"\[engine\].*engine.run_timeout"):
        ExecutionEngineFactory(load_entrypoints=False, config=config)
    config.write_text("[engine\n")
    with pytest.raises(agentengine.ConfigError, match="not valid TOML"):
        ExecutionEngineFactory(load_entrypoints=False, config=config)


async def test_one_context_reused_for_several_engines_never_duplicates_run_ids() -> None:
    ctx = UserExecutionContext(user_id="alice", thread_id="t-1", run_id="r-1")
    async with make_factory() as factory:
        run_ids = []
        for _ in range(3):
            async with factory.user_execution_engine(ctx) as engine:
                run_ids.append((await engine.execute_agent("calc", {"text": "x"})).run_id)
        other = UserExecutionContext(user_id="bob", thread_id="t-1", run_id="r-1")
        async with factory.user_execution_engine(other) as engine:
            bob_run = (await engine.execute_agent("calc", {"text": "x"})).run_id
    assert run_ids[0] == "r-1"
    assert len(set(run_ids)) == 3
    assert bob_run == "r-1"  # run ids are per user


async def test_metrics_sum_run_durations() -> None:
    async with make_factory() as factory:
        async with factory.user_execution_engine(UserExecutionContext.for_user("al")) as e:
            results = [await e.execute_agent("sleeper", {"seconds": 0.02}) for _ in range(3)]
        metrics = factory.get_factory_metrics()
    assert metrics["runs"] == 3 and metrics["runs_succeeded"] == 3
    expected = sum(r.duration_ms for r in results)
    assert abs(metrics["run_duration_ms_total"] - expected) < 0.01
    assert metrics["run_duration_ms_total"] >= 60


async def test_create_request_scoped_engine_is_an_alias_of_user_execution_engine() -> None:
    """One implementation under two names: the old name delegates, so a subclass changing
    ``user_execution_engine`` changes both."""
    entered: list[str] = []

    class Recording(agentengine.ExecutionEngineFactory):
        def user_execution_engine(self, context):  # type: ignore[no-untyped-def,override]
            entered.append(context.user_id)
            return super().user_execution_engine(context)

    factory = Recording(load_entrypoints=False)
    async with factory:
        ctx = agentengine.UserExecutionContext.for_user("alice")
        async with factory.create_request_scoped_engine(ctx) as engine:
            assert engine in factory.engines_for("alice")
        assert factory.engines_for("alice") == []
    assert entered == ["alice"]
    doc = agentengine.ExecutionEngineFactory.create_request_scoped_engine.__doc__ or ""
    assert doc.startswith("Alias of ``user_execution_engine``")


def test_settings_arguments_default_to_a_named_sentinel() -> None:
    """help() and IDEs show ``run_timeout: float = FROM_CONFIG``, not an object address."""
    import inspect
    import pydoc

    from agentengine.runtime.factory import FROM_CONFIG

    parameters = inspect.signature(ExecutionEngineFactory).parameters
    assert parameters["run_timeout"].default is FROM_CONFIG
    assert repr(FROM_CONFIG) == "FROM_CONFIG"
    text = pydoc.render_doc(ExecutionEngineFactory, renderer=pydoc.plaintext)
    assert "run_timeout: 'float' = FROM_CONFIG" in text
    assert "object at 0x" not in text


def test_the_factory_logs_which_configuration_file_it_used(tmp_path: Path) -> None:
    from structlog.testing import capture_logs

    with capture_logs() as logs:
        ExecutionEngineFactory(load_entrypoints=False, environ={})
    lines = [e for e in logs if "config" in e and "configuration" in e["event"]]
    assert len(lines) == 1 and lines[0]["log_level"] == "info"
    assert lines[0]["config"] is None and "no configuration file found" in lines[0]["event"]
    assert lines[0]["cwd"]
    config = tmp_path / "agentengine.toml"
    config.write_text("[engine]\nrun_timeout = 7\n")
    with capture_logs() as logs:
        ExecutionEngineFactory(load_entrypoints=False, environ={"AGENTENGINE_CONFIG": str(config)})
    (line,) = [e for e in logs if "config" in e]
    assert line["config"] == str(config) and line["event"] == "factory configuration loaded"
