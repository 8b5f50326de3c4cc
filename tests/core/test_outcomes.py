"""Every way a run can end produces exactly one terminal event and intact invariants."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from agentengine import (
    BaseEvent,
    ExecutionEngineFactory,
    Extension,
    RunResult,
    RunStatus,
    UserExecutionContext,
    hookimpl,
)
from invariants import check_run, check_stream
from outcome_agents import OutcomesPlugin


def make_factory(*extra: Any, **kwargs: Any) -> ExecutionEngineFactory:
    return ExecutionEngineFactory(
        plugins=[OutcomesPlugin(), *extra], load_entrypoints=False, **kwargs
    )


async def run_once(agent: str, run_input: dict[str, Any] | None = None, **kwargs: Any):
    async with make_factory(**kwargs) as factory:
        async with factory.user_execution_engine(UserExecutionContext.for_user("alice")) as e:
            result = await e.execute_agent(agent, run_input or {})
        delivered = factory.events.retained("alice")  # type: ignore[attr-defined]
    check_run(list(result.events))
    assert [e.seq for e in delivered] == [e.seq for e in result.events]
    return result


async def test_success() -> None:
    result = await run_once("calc", {"text": "sum"})
    assert result.status is RunStatus.SUCCEEDED
    assert result.output == "sum: 3"
    assert [e.type for e in result.events] == [
        "agent_started",
        "agent_thinking",
        "tool_executing",
        "tool_completed",
        "agent_completed",
    ]
    completed = result.events[-1]
    assert completed.output == "sum: 3" and completed.status == "succeeded"  # type: ignore[attr-defined]


async def test_agent_exception() -> None:
    result = await run_once("agent_raises")
    assert result.status is RunStatus.FAILED
    assert result.error == "ValueError: agent broke"
    assert result.error_type == "ValueError"
    assert result.events[-2].type == "agent_error"
    assert result.events[-2].error == "ValueError: agent broke"  # type: ignore[attr-defined]


async def test_tool_exception_reported_then_run_fails() -> None:
    result = await run_once("tool_raises")
    assert result.status is RunStatus.FAILED
    done = next(e for e in result.events if e.type == "tool_completed")
    assert done.status == "error"  # type: ignore[attr-defined]
    assert done.error == "RuntimeError: kaboom"  # type: ignore[attr-defined]
    assert result.error_type == "ToolError"
    assert "kaboom" in (result.error or "")


async def test_agent_can_catch_tool_error_and_go_on() -> None:
    result = await run_once("catches_tool_error")
    assert result.status is RunStatus.SUCCEEDED
    assert result.output == "recovered from RuntimeError: boom"


async def test_invalid_tool_arguments_never_reach_the_handler() -> None:
    result = await run_once("bad_args")
    assert result.status is RunStatus.FAILED
    done = next(e for e in result.events if e.type == "tool_completed")
    assert done.status == "error"  # type: ignore[attr-defined]
    assert "invalid arguments for tool 'add'" in done.error  # type: ignore[attr-defined]
    assert "a: Input should be a valid integer" in done.error  # type: ignore[attr-defined]
    assert "b: Field required" in done.error  # type: ignore[attr-defined]


async def test_tool_timeout() -> None:
    result = await run_once("tool_times_out")
    assert result.status is RunStatus.FAILED
    done = next(e for e in result.events if e.type == "tool_completed")
    assert done.status == "timeout"  # type: ignore[attr-defined]
    assert done.error == "tool 'slow_tool' timed out after 0.05s"  # type: ignore[attr-defined]


async def test_run_timeout_cancels_the_tool_in_flight() -> None:
    async with make_factory() as factory:
        async with factory.user_execution_engine(UserExecutionContext.for_user("alice")) as e:
            result = await e.execute_agent("sleeper", {"seconds": 30}, timeout=0.1)
    check_run(list(result.events))
    assert result.status is RunStatus.TIMED_OUT
    assert result.error == "run exceeded its deadline of 0.1s"
    tool_done = next(e for e in result.events if e.type == "tool_completed")
    assert tool_done.status == "cancelled"  # type: ignore[attr-defined]


async def test_invalid_agent_input_fails_the_run_with_a_clear_error() -> None:
    result = await run_once("calc", {"txt": "typo"})
    assert result.status is RunStatus.FAILED
    assert "text: Field required" in (result.error or "")
    assert "txt: Extra inputs are not permitted" in (result.error or "")


@pytest.mark.parametrize("when", ["before_first_step", "during_tool"])
async def test_cancellation(when: str) -> None:
    async with make_factory() as factory:
        async with factory.user_execution_engine(UserExecutionContext.for_user("alice")) as e:
            handle = await e.start_run("sleeper", {"seconds": 30})
            if when == "during_tool":
                async for event in handle:
                    if event.type == "tool_executing":
                        break
            await handle.cancel()
            result = await handle.result()
    check_run(list(result.events))
    assert result.status is RunStatus.CANCELLED
    if when == "during_tool":
        assert result.events[-2].type == "tool_completed"
        assert result.events[-2].status == "cancelled"  # type: ignore[attr-defined]
    else:
        assert [e.type for e in result.events] == ["agent_started", "agent_completed"]


async def test_cancelling_execute_agent_caller_cancels_the_run() -> None:
    async with make_factory() as factory:
        engine = await factory.create_for_user(UserExecutionContext.for_user("alice"))
        task = asyncio.create_task(engine.execute_agent("sleeper", {"seconds": 30}))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await engine.wait_idle(5)
        assert engine.get_execution_stats()["cancelled"] == 1
        await engine.cleanup()


async def test_engine_cleanup_ends_active_runs_with_terminal_event() -> None:
    async with make_factory() as factory:
        engine = await factory.create_for_user(UserExecutionContext.for_user("alice"))
        handles = [await engine.start_run("sleeper", {"seconds": 30}) for _ in range(3)]
        await asyncio.sleep(0.02)
        await engine.cleanup()
        await engine.cleanup()  # idempotent
        for handle in handles:
            result = await handle.result()
            check_run(list(result.events))
            assert result.status is RunStatus.CANCELLED
        stats = engine.get_execution_stats()
        assert stats["cancelled"] == 3 and stats["active"] == 0


async def test_factory_shutdown_drains_then_cancels() -> None:
    factory = make_factory(drain_timeout=0.2)
    engine = await factory.create_for_user(UserExecutionContext.for_user("alice"))
    quick = await engine.start_run("sleeper", {"seconds": 0.05})
    stuck = await engine.start_run("sleeper", {"seconds": 30})
    await factory.shutdown()
    assert (await quick.result()).status is RunStatus.SUCCEEDED  # drained, not cancelled
    assert (await stuck.result()).status is RunStatus.CANCELLED
    check_run(list((await stuck.result()).events))
    assert engine.closed
    assert factory.get_factory_metrics()["engines_active"] == 0


class RaisingSink:
    """A sink whose publish always raises: runs must still complete and keep their events."""

    def __init__(self) -> None:
        self.calls = 0

    def publish(self, event: BaseEvent) -> None:
        self.calls += 1
        raise ConnectionError("sink down")

    def subscribe(self, user_id: str, after: str | None = None):  # pragma: no cover - unused
        raise NotImplementedError

    def latest_cursor(self, user_id: str) -> str | None:  # pragma: no cover - unused
        return None

    async def aclose(self) -> None:
        return None


async def test_raising_event_sink_does_not_break_the_run() -> None:
    sink = RaisingSink()
    factory = make_factory(event_sink=sink)
    async with factory, factory.user_execution_engine(UserExecutionContext.for_user("al")) as e:
        result = await e.execute_agent("calc", {"text": "x"})
    assert result.status is RunStatus.SUCCEEDED
    check_run(list(result.events))
    assert sink.calls == len(result.events)
    assert factory.get_factory_metrics()["errors"]["sink"] == len(result.events)


class Observer(Extension):
    def __init__(self, raises: bool) -> None:
        self.raises = raises
        self.seen: list[str] = []

    def on_event(self, event: BaseEvent) -> None:
        self.seen.append(event.type)
        if self.raises:
            raise RuntimeError("observer bug")


class ObserverPlugin:
    def __init__(self, name: str, raises: bool) -> None:
        self.name = name
        self.observer = Observer(raises)

    @hookimpl
    def agentengine_engine_extensions(self, context, engine):  # type: ignore[no-untyped-def]
        return self.observer


async def test_raising_observer_is_skipped_and_others_still_observe() -> None:
    bad = ObserverPlugin("bad-observer", raises=True)
    good = ObserverPlugin("good-observer", raises=False)
    factory = make_factory(bad, good)
    from structlog.testing import capture_logs

    with capture_logs() as logs:
        async with factory, factory.user_execution_engine(UserExecutionContext.for_user("al")) as e:
            result = await e.execute_agent("calc", {"text": "x"})
    assert result.status is RunStatus.SUCCEEDED
    check_run(list(result.events))
    expected = [ev.type for ev in result.events]
    assert bad.observer.seen == expected
    assert good.observer.seen == expected
    errors = [log for log in logs if log["event"] == "event observer raised; skipped"]
    assert len(errors) == len(expected)
    assert {log["plugin"] for log in errors} == {"bad-observer"}
    assert factory.get_factory_metrics()["errors"]["bad-observer"] == len(expected)


async def test_streams_of_failed_runs_are_intact_for_subscribers() -> None:
    async with make_factory() as factory:
        async with factory.user_execution_engine(UserExecutionContext.for_user("alice")) as e:
            for agent in ("calc", "agent_raises", "tool_raises", "bad_args", "tool_times_out"):
                await e.execute_agent(agent, {"text": "t"} if agent == "calc" else {})
        by_run = check_stream("alice", factory.events.retained("alice"))  # type: ignore[attr-defined]
    assert len(by_run) == 5


@pytest.mark.parametrize("agent", ["calc", "agent_raises", "tool_raises", "bad_args"])
async def test_engine_built_events_and_results_equal_validated_ones(agent: str) -> None:
    """The run path builds events and results without validation; what it builds must be
    indistinguishable from the validated models: same fields, order, values and wire form."""
    result = await run_once(agent, {"text": "sum"} if agent == "calc" else {})
    for event in result.events:
        cls = type(event)
        rebuilt = cls.model_validate(event.model_dump())
        assert rebuilt == event
        assert list(event.model_dump()) == list(cls.model_fields)
        assert event.model_fields_set == rebuilt.model_fields_set
        assert event.to_wire() == rebuilt.to_wire()
        assert event.model_copy(update={"seq": 99}).seq == 99
    fields = {f.name: getattr(result, f.name) for f in dataclasses.fields(RunResult)}
    assert RunResult(**fields) == result
    assert dataclasses.replace(result, output="x").output == "x"
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.output = "changed"  # type: ignore[misc]


async def test_a_tool_timeout_in_a_task_of_its_own_cancels_only_that_call() -> None:
    result = await run_once("parallel_tools")
    assert result.status is RunStatus.SUCCEEDED
    assert result.output == ["ToolError", "float"]
    done = {e.tool: e.status for e in result.events if e.type == "tool_completed"}  # type: ignore[attr-defined]
    assert done == {"slow_tool": "timeout", "nap": "ok"}
