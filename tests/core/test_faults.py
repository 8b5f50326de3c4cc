"""Failure semantics: whatever user code raises ends that tool call or run, never the process.

Every place user code runs (tools, agents, ``around_run``/``around_tool``, tool resolvers,
request-scope openers and closers, extension ``start``/``close``, observers) is made to raise
each kind of exception: an ordinary one, ``SystemExit``, ``KeyboardInterrupt``,
``GeneratorExit``, a ``BaseException`` subclass of its own, and a ``CancelledError`` that is not
a cancellation (nobody cancelled the task). See the "Failure semantics" table in
docs/architecture.md.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from agentengine import (
    AgentEngineError,
    BaseEvent,
    ExecutionEngineFactory,
    Extension,
    RunContext,
    RunStatus,
    ToolError,
    UserExecutionContext,
    agent,
    hookimpl,
    tool,
)
from agentengine.plugins.extensions import ToolCall
from agentengine.runtime.deadlines import DeadlineScheduler
from agentengine.testing import capture_logs
from invariants import check_run, check_stream


class CustomBase(BaseException):
    """A BaseException subclass of a library's own."""


class BadStr(Exception):
    """An exception whose ``str()`` itself raises."""

    def __str__(self) -> str:
        raise RuntimeError("no text for you")


EXCEPTIONS: dict[str, Callable[[], BaseException]] = {
    "RuntimeError": lambda: RuntimeError("boom"),
    "SystemExit": lambda: SystemExit(2),
    "KeyboardInterrupt": KeyboardInterrupt,
    "GeneratorExit": GeneratorExit,
    "CustomBase": lambda: CustomBase("custom"),
    "CancelledError": asyncio.CancelledError,
}


class Faults:
    """One site raising one kind of exception, for user ``bad`` only."""

    def __init__(self, site: str, kind: str) -> None:
        self.site = site
        self.kind = kind
        self.fired = 0

    def fire(self, site: str, user: str = "bad") -> None:
        if site == self.site and user == "bad":
            self.fired += 1
            raise EXCEPTIONS[self.kind]()


class FaultExtension(Extension):
    def __init__(self, faults: Faults, user: str) -> None:
        self.faults = faults
        self.user = user
        self.closed = False

    async def start(self) -> None:
        await asyncio.sleep(0)
        self.faults.fire("start", self.user)

    async def close(self) -> None:
        self.closed = True
        await asyncio.sleep(0)
        self.faults.fire("close", self.user)

    async def around_run(self, run: RunContext, call_next: Callable[[], Awaitable[Any]]) -> Any:
        await asyncio.sleep(0)
        self.faults.fire("around_run", self.user)
        return await call_next()

    async def around_tool(
        self, run: RunContext, call: ToolCall, call_next: Callable[[ToolCall], Awaitable[Any]]
    ) -> Any:
        await asyncio.sleep(0)
        self.faults.fire("around_tool", self.user)
        return await call_next(call)

    async def resolve_tool(self, name: str) -> Any:
        await asyncio.sleep(0)
        self.faults.fire("resolver", self.user)
        return None

    def on_event(self, event: BaseEvent) -> None:
        self.faults.fire("observer", event.user_id)


class FaultPlugin:
    name = "faulty-plugin"

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.extensions: list[FaultExtension] = []

    @hookimpl
    def agentengine_register_tools(self, registry: Any) -> None:
        faults = self.faults

        @tool(name="faulty")
        async def faulty(run: RunContext) -> str:
            """Raise the configured exception (user bad only)."""
            await asyncio.sleep(0)
            faults.fire("tool", run.user_id)
            return "fine"

        registry.add(faulty)

    @hookimpl
    def agentengine_register_agents(self, registry: Any) -> None:
        faults = self.faults

        @agent(name="victim")
        async def victim(run: RunContext, tool_name: str = "faulty", scope: bool = False) -> Any:
            await run.think("working")
            if scope:
                await run.scope["res"]
            await asyncio.sleep(0)
            faults.fire("agent", run.user_id)
            try:
                return await run.call_tool(tool_name, {})
            except ToolError as exc:  # the agent sees a ToolError, like for any failing tool
                return f"tool failed: {exc.message}"

        registry.add(victim)

    @hookimpl
    def agentengine_register_resources(self, registry: Any) -> None:
        faults = self.faults

        @contextlib.asynccontextmanager
        async def res(run: RunContext) -> AsyncIterator[str]:
            await asyncio.sleep(0)
            faults.fire("opener", run.user_id)
            yield "resource"
            await asyncio.sleep(0)
            faults.fire("closer", run.user_id)

        registry.add("res", res)

    @hookimpl
    def agentengine_engine_extensions(self, context: Any, engine: Any) -> Any:
        ext = FaultExtension(self.faults, context.user_id)
        self.extensions.append(ext)
        return ext


def fault_factory(site: str, kind: str, **kwargs: Any) -> tuple[ExecutionEngineFactory, Faults]:
    faults = Faults(site, kind)
    factory = ExecutionEngineFactory(
        plugins=[FaultPlugin(faults)], load_entrypoints=False, idle_ttl=None, **kwargs
    )
    return factory, faults


async def run_victim(
    factory: ExecutionEngineFactory, user: str, **run_input: Any
) -> tuple[Any, list[BaseEvent]]:
    async with factory.user_execution_engine(UserExecutionContext.for_user(user)) as engine:
        result = await engine.execute_agent("victim", run_input)
    check_run(list(result.events))
    return result, list(result.events)


def tool_completed(events: list[BaseEvent]) -> Any:
    done = [e for e in events if e.type == "tool_completed"]
    assert len(done) == 1, [e.type for e in events]
    return done[0]


async def then_others_still_work(factory: ExecutionEngineFactory) -> None:
    """The factory (the process) goes on: another user's run succeeds, and the bad user's
    stream holds exactly one terminal event per run."""
    result, _ = await run_victim(factory, "good")
    assert result.status is RunStatus.SUCCEEDED, result
    assert result.output == "fine"
    for user in ("bad", "good"):
        by_run = check_stream(user, factory.events.retained(user))  # type: ignore[attr-defined]
        for events in by_run.values():
            assert sum(e.type == "agent_completed" for e in events) == 1


KINDS = list(EXCEPTIONS)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("site", ["tool", "around_tool", "resolver"])
async def test_a_tool_call_that_raises_anything_ends_as_tool_error(site: str, kind: str) -> None:
    factory, faults = fault_factory(site, kind)
    async with factory:
        tool_name = "nowhere" if site == "resolver" else "faulty"
        result, events = await run_victim(factory, "bad", tool_name=tool_name)
        assert faults.fired == 1
        assert result.status is RunStatus.SUCCEEDED, result
        done = tool_completed(events)
        assert done.status == "error", done
        assert kind in done.error, done.error
        assert result.output == f"tool failed: {done.error}"
        await then_others_still_work(factory)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("site", ["agent", "around_run"])
async def test_an_agent_or_run_middleware_that_raises_anything_fails_the_run(
    site: str, kind: str
) -> None:
    factory, faults = fault_factory(site, kind)
    with capture_logs() as logs:
        async with factory:
            result, events = await run_victim(factory, "bad")
            assert faults.fired == 1
            assert result.status is RunStatus.FAILED, result
            assert result.error_type == kind
            assert result.error is not None and result.error.startswith(kind)
            assert events[-2].type == "agent_error"
            assert events[-2].error_type == kind  # type: ignore[attr-defined]
            assert events[-1].type == "agent_completed"
            await then_others_still_work(factory)
    assert any(log["event"] == "run failed" and log["error_type"] == kind for log in logs)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_resource_opener_that_raises_anything_fails_the_run(kind: str) -> None:
    factory, faults = fault_factory("opener", kind)
    async with factory:
        result, _ = await run_victim(factory, "bad", scope=True)
        assert faults.fired == 1
        assert result.status is RunStatus.FAILED, result
        assert result.error_type == "ScopedResourceError"
        assert f"failed to open: {kind}" in (result.error or "")
        await then_others_still_work(factory)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_resource_closer_that_raises_anything_is_logged_and_the_result_stands(
    kind: str,
) -> None:
    factory, faults = fault_factory("closer", kind)
    with capture_logs() as logs:
        async with factory:
            result, _ = await run_victim(factory, "bad", scope=True)
            assert faults.fired == 1
            assert result.status is RunStatus.SUCCEEDED, result
            assert result.output == "fine"
            await then_others_still_work(factory)
    failures = [log for log in logs if log["event"] == "scoped resource failed to close"]
    assert len(failures) == 1, logs
    assert failures[0]["error"].startswith(kind)


@pytest.mark.parametrize("kind", KINDS)
async def test_an_extension_start_that_raises_anything_refuses_that_engine_only(
    kind: str,
) -> None:
    factory, faults = fault_factory("start", kind)
    async with factory:
        with pytest.raises(AgentEngineError) as caught:
            await factory.create_for_user(UserExecutionContext.for_user("bad"))
        assert faults.fired == 1
        assert "faulty-plugin" in str(caught.value)
        assert kind in str(caught.value)
        assert factory.engines_for("bad") == []
        assert factory.get_factory_metrics()["errors"]["faulty-plugin"] == 1
        await then_others_still_work(factory)


@pytest.mark.parametrize("kind", KINDS)
async def test_an_extension_close_that_raises_anything_is_logged_and_cleanup_completes(
    kind: str,
) -> None:
    factory, faults = fault_factory("close", kind)
    with capture_logs() as logs:
        async with factory:
            result, _ = await run_victim(factory, "bad")  # cleaned up on leaving the block
            assert result.status is RunStatus.SUCCEEDED
            assert faults.fired == 1
            assert factory.engines_for("bad") == []
            assert factory.get_factory_metrics()["errors"]["faulty-plugin"] == 1
            await then_others_still_work(factory)
    failures = [log for log in logs if log["event"] == "extension failed to close"]
    assert len(failures) == 1
    assert failures[0]["plugin"] == "faulty-plugin"
    assert failures[0]["error"].startswith(kind)


@pytest.mark.parametrize("kind", KINDS)
async def test_an_observer_that_raises_anything_is_skipped(kind: str) -> None:
    factory, faults = fault_factory("observer", kind)
    with capture_logs() as logs:
        async with factory:
            engine = await factory.create_for_user(UserExecutionContext.for_user("bad"))
            handle = await engine.start_run("victim", {})  # agent_started is observed here
            result = await asyncio.wait_for(handle.result(), 30)
            assert result.status is RunStatus.SUCCEEDED, result
            check_run(list(result.events))
            assert engine.get_execution_stats()["active"] == 0
            assert faults.fired == len(result.events)
            await engine.cleanup()
            await then_others_still_work(factory)
    skipped = [log for log in logs if log["event"] == "event observer raised; skipped"]
    assert len(skipped) == len(result.events)
    assert {log["plugin"] for log in skipped} == {"faulty-plugin"}
    assert all(log["error"].startswith(kind) for log in skipped)


class OneEventObserver(Extension):
    """Raises CancelledError when it sees one event type."""

    def __init__(self, event_type: str) -> None:
        self.event_type = event_type

    def on_event(self, event: BaseEvent) -> None:
        if event.type == self.event_type:
            raise asyncio.CancelledError()


@pytest.mark.parametrize("event_type", ["agent_started", "agent_completed"])
async def test_an_observer_cancelled_error_on_a_lifecycle_event_keeps_the_invariants(
    event_type: str,
) -> None:
    factory, _ = fault_factory("nowhere", "RuntimeError")
    async with factory:
        ctx = UserExecutionContext.for_user("alice")
        engine = await factory.create_for_user(ctx, extensions=[OneEventObserver(event_type)])
        handle = await engine.start_run("victim", {})
        result = await asyncio.wait_for(handle.result(), 30)
        assert result.status is RunStatus.SUCCEEDED
        check_run(list(result.events))
        completed = [e for e in factory.events.retained("alice") if e.type == "agent_completed"]  # type: ignore[attr-defined]
        assert len(completed) == 1
        assert engine.get_execution_stats()["active"] == 0
        await engine.cleanup()


async def test_an_exception_whose_str_raises_still_gets_its_terminal_event() -> None:
    @agent(name="bad_str")
    async def bad_str(run: RunContext) -> None:
        raise BadStr()

    class Plugin:
        @hookimpl
        def agentengine_register_agents(self, registry: Any) -> None:
            registry.add(bad_str)

    factory = ExecutionEngineFactory(plugins=[Plugin()], load_entrypoints=False)
    async with factory, factory.user_execution_engine(UserExecutionContext.for_user("a")) as e:
        result = await e.execute_agent("bad_str", {})
    assert result.status is RunStatus.FAILED
    assert result.error_type == "BadStr"
    assert result.error is not None and result.error.startswith("BadStr")
    check_run(list(result.events))


# -- cancellation always wins ---------------------------------------------------------------------


async def test_an_expired_deadline_does_not_swallow_another_cancellation() -> None:
    scheduler = DeadlineScheduler()
    started = asyncio.Event()

    async def body() -> None:
        with scheduler.deadline(0.01):
            started.set()
            await asyncio.sleep(0)  # the deadline is registered at the end of this step
            import time

            time.sleep(0.05)  # noqa: ASYNC251 - both the deadline and the outside cancel are due when we wait
            await asyncio.sleep(10)

    task = asyncio.create_task(body())
    await started.wait()
    asyncio.get_running_loop().call_later(0.01, task.cancel)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


class CancelPlugin:
    """Agents that race a cancel against a tool timeout, or ignore cancellation."""

    name = "cancel-plugin"

    def __init__(self) -> None:
        self.cancels_seen: list[str] = []
        self.released = False

    async def release(self, handles: list[Any]) -> None:
        """Let the stubborn agents stop (the test's event loop must be able to close)."""
        self.released = True
        tasks = [h._run.task for h in handles if h._run.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=10)

    @hookimpl
    def agentengine_register_tools(self, registry: Any) -> None:
        @tool(name="stalls", timeout=0.05)
        async def stalls() -> str:
            """Block the loop past its own deadline, then wait."""
            await asyncio.sleep(0)
            import time

            time.sleep(0.2)  # noqa: ASYNC251 - the tool deadline and the outside cancel both fall due meanwhile
            await asyncio.sleep(30)
            return "late"

        registry.add(stalls)

    @hookimpl
    def agentengine_register_agents(self, registry: Any) -> None:
        seen = self.cancels_seen
        plugin = self

        @agent(name="fallback")
        async def fallback(run: RunContext) -> str:
            try:
                return str(await run.call_tool("stalls", {}))
            except ToolError:
                return "fallback answer"

        @agent(name="swallower")
        async def swallower(run: RunContext, then: str = "return") -> str:
            await run.think("sleeping")
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                seen.append(run.user_id)
            if then == "raise":
                raise ValueError("after the cancel")
            return "ignored the cancel"

        @agent(name="stubborn")
        async def stubborn(run: RunContext) -> str:
            await run.think("never stopping")
            while True:
                try:
                    await asyncio.sleep(30)
                except asyncio.CancelledError:
                    seen.append(run.user_id)
                    if plugin.released:
                        raise

        registry.add(fallback)
        registry.add(swallower)
        registry.add(stubborn)


def cancel_factory(**kwargs: Any) -> tuple[ExecutionEngineFactory, CancelPlugin]:
    plugin = CancelPlugin()
    kwargs.setdefault("idle_ttl", None)
    factory = ExecutionEngineFactory(plugins=[plugin], load_entrypoints=False, **kwargs)
    return factory, plugin


async def test_a_cancel_racing_a_tool_timeout_wins() -> None:
    factory, _ = cancel_factory()
    async with factory, factory.user_execution_engine(UserExecutionContext.for_user("a")) as e:
        handle = await e.start_run("fallback", {})
        # Due at about the tool's deadline; both fire while the tool blocks the loop.
        asyncio.get_running_loop().call_later(0.05, handle.cancel_nowait)
        result = await asyncio.wait_for(handle.result(), 30)
    assert result.status is RunStatus.CANCELLED, result
    check_run(list(result.events))
    assert tool_completed(list(result.events)).status == "cancelled"


@pytest.mark.parametrize("then", ["return", "raise"])
async def test_a_run_asked_to_cancel_ends_cancelled_whatever_the_agent_did(then: str) -> None:
    factory, plugin = cancel_factory()
    async with factory, factory.user_execution_engine(UserExecutionContext.for_user("a")) as e:
        handle = await e.start_run("swallower", {"then": then})
        async for event in handle:
            if event.type == "agent_thinking":
                break
        await asyncio.wait_for(handle.cancel(), 30)
        result = await handle.result()
        assert result.status is RunStatus.CANCELLED, result
        assert result.output is None
        check_run(list(result.events))
        assert plugin.cancels_seen == ["a"]
        assert e.get_execution_stats()["cancelled"] == 1


async def test_an_inline_run_cancelled_by_cleanup_that_swallows_it_ends_cancelled() -> None:
    factory, _ = cancel_factory()
    async with factory:
        engine = await factory.create_for_user(UserExecutionContext.for_user("a"))
        task = asyncio.create_task(engine.execute_agent("swallower", {}))
        while not engine.active_runs() or len(engine.active_runs()[0]._run._events) < 2:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        await asyncio.wait_for(engine.cleanup(), 30)
        result = await asyncio.wait_for(task, 30)
        assert result.status is RunStatus.CANCELLED
        assert not task.cancelled()


async def test_a_run_that_never_stops_is_abandoned_with_its_terminal_event() -> None:
    factory, plugin = cancel_factory(close_timeout=0.2)
    async with factory, factory.user_execution_engine(UserExecutionContext.for_user("a")) as e:
        handle = await e.start_run("stubborn", {})
        async for event in handle:
            if event.type == "agent_thinking":
                break
        try:
            await asyncio.wait_for(handle.cancel(), 30)  # returns although the agent goes on
            result = await handle.result()
            assert result.status is RunStatus.CANCELLED
            assert "did not stop" in (result.error or "")
            check_run(list(result.events))
            assert plugin.cancels_seen == ["a"]
            assert e.active_runs() == []
        finally:
            await plugin.release([handle])


# -- shutdown is bounded ------------------------------------------------------------------------


class SlowClose(Extension):
    """An extension whose close takes forever (and swallows the first cancellation)."""

    def __init__(self, started: list[str], user: str) -> None:
        self.started = started
        self.user = user

    async def close(self) -> None:
        self.started.append(self.user)
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await asyncio.sleep(3600)


async def test_shutdown_cancels_every_run_at_once_and_abandons_those_that_never_stop() -> None:
    factory, plugin = cancel_factory(drain_timeout=0.1, close_timeout=0.3)
    handles = []
    for user in ("u1", "u2", "u3"):
        engine = await factory.create_for_user(UserExecutionContext.for_user(user))
        handles.append(await engine.start_run("stubborn", {}))
    handles.append(await engine.start_run("swallower", {}))
    for handle in handles:
        async for event in handle:
            if event.type == "agent_thinking":
                break
    try:
        await asyncio.wait_for(factory.shutdown(), 30)
        results = [await h.result() for h in handles]
        seen = list(plugin.cancels_seen)
    finally:
        await plugin.release(handles)
    assert [r.status for r in results] == [RunStatus.CANCELLED] * 4
    for result in results[:3]:
        assert "did not stop" in (result.error or ""), result
        check_run(list(result.events))
    assert results[3].error == "the run was cancelled"
    # Every run got its cancellation, not only the first engine's.
    assert sorted(seen) == ["u1", "u2", "u3", "u3"]
    metrics = factory.get_factory_metrics()
    assert metrics["engines_active"] == 0 and metrics["runs_active"] == 0


async def test_shutdown_closes_extensions_concurrently_under_their_own_bound() -> None:
    factory, _ = cancel_factory(drain_timeout=0.1, close_timeout=0.3)
    started: list[str] = []
    for user in ("u1", "u2"):
        await factory.create_for_user(
            UserExecutionContext.for_user(user), extensions=[SlowClose(started, user)]
        )
    with capture_logs() as logs:
        await asyncio.wait_for(factory.shutdown(), 30)
    assert sorted(started) == ["u1", "u2"]
    assert factory.get_factory_metrics()["engines_active"] == 0
    abandoned = [log for log in logs if log["event"] == "extension did not close in time"]
    assert sorted(log["user_id"] for log in abandoned) == ["u1", "u2"], logs


async def test_engine_cleanup_is_bounded_by_close_timeout() -> None:
    factory, plugin = cancel_factory(close_timeout=0.2)
    async with factory:
        started: list[str] = []
        engine = await factory.create_for_user(
            UserExecutionContext.for_user("a"), extensions=[SlowClose(started, "a")]
        )
        handle = await engine.start_run("stubborn", {})
        async for event in handle:
            if event.type == "agent_thinking":
                break
        try:
            await asyncio.wait_for(engine.cleanup(), 30)
            assert (await handle.result()).status is RunStatus.CANCELLED
            assert started == ["a"]
            assert factory.engines_for("a") == []
        finally:
            await plugin.release([handle])
