"""Request-scope rules: closing order, failing and hanging closes, bad declarations, errors."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from agentengine import RunContext, RunStatus, Settings, UserExecutionContext, agent, hookimpl
from agentengine.definitions.resources import EMPTY_SCOPE, ResourceRegistry
from agentengine.errors import EngineClosedError, RegistrationError
from agentengine.request_scope import RequestScope, UnknownResourceError
from agentengine.testing import assert_event_sequence, run_agent


class Recording:
    """Resources a, b, c that log their opening and closing; `broken_close` raises on close,
    `hanging_close` never finishes closing, `broken_open` fails to open."""

    name = "recording"

    def __init__(self) -> None:
        self.log: list[str] = []

    def resource(self, name: str, *, close: str = "ok") -> Any:
        @contextlib.asynccontextmanager
        async def open_it() -> Any:
            self.log.append(f"open {name}")
            try:
                yield f"<{name}>"
            finally:
                if close == "raise":
                    self.log.append(f"close {name} (raising)")
                    raise OSError(f"{name} could not flush")
                if close == "hang":
                    self.log.append(f"close {name} (hanging)")
                    await asyncio.sleep(60)
                self.log.append(f"close {name}")

        return open_it

    @hookimpl
    def agentengine_register_resources(self, registry: ResourceRegistry) -> None:
        registry.add("a", self.resource("a"))
        registry.add("b", self.resource("b"))
        registry.add("c", self.resource("c"))
        registry.add("broken_close", self.resource("broken_close", close="raise"))
        registry.add("hanging_close", self.resource("hanging_close", close="hang"))

        async def broken_open() -> Any:  # an async generator function is accepted too
            raise ConnectionRefusedError("db is down")
            yield  # pragma: no cover

        registry.add("broken_open", broken_open)

    @hookimpl
    def agentengine_register_agents(self, registry: Any) -> None:
        @agent(name="use")
        async def use(run: RunContext, names: list[str], fail: bool = False) -> list[str]:
            """Open the named resources in order."""
            values = [await run.scope[n] for n in names]
            assert run.scope.opened == names
            if fail:
                raise ValueError("agent failed")
            return values

        @agent(name="late")
        async def late(run: RunContext) -> str:
            """Keep the scope and try it after the run (never possible)."""
            run.state["scope"] = run.scope
            return "ok"

        registry.add(use)
        registry.add(late)


@pytest.fixture
def recording() -> Recording:
    return Recording()


async def test_closed_in_reverse_order_of_opening(make_engine_factory, recording) -> None:
    factory = make_engine_factory(plugins=[recording])
    result, _ = await run_agent(factory, "use", {"names": ["b", "a", "c"]})
    assert result.output == ["<b>", "<a>", "<c>"]
    assert recording.log == ["open b", "open a", "open c", "close c", "close a", "close b"]


async def test_a_failing_close_is_logged_and_never_masks_the_result(
    make_engine_factory, recording, captured_logs
) -> None:
    factory = make_engine_factory(plugins=[recording])
    result, _ = await run_agent(factory, "use", {"names": ["a", "broken_close", "b"]})
    assert result.status is RunStatus.SUCCEEDED
    assert result.output == ["<a>", "<broken_close>", "<b>"]
    assert recording.log[3:] == ["close b", "close broken_close (raising)", "close a"]
    errors = [e for e in captured_logs if e["event"] == "scoped resource failed to close"]
    assert len(errors) == 1
    assert errors[0]["resource"] == "broken_close"
    assert "OSError: broken_close could not flush" in errors[0]["error"]
    assert errors[0]["run_id"] == result.run_id


async def test_a_failing_close_does_not_mask_the_runs_own_error(
    make_engine_factory, recording
) -> None:
    factory = make_engine_factory(plugins=[recording])
    result, _ = await run_agent(factory, "use", {"names": ["broken_close"], "fail": True})
    assert result.status is RunStatus.FAILED
    assert result.error == "ValueError: agent failed"


async def test_a_hanging_close_is_abandoned_after_close_timeout(
    make_engine_factory, recording, captured_logs
) -> None:
    factory = make_engine_factory(
        plugins=[recording], config=Settings({"request_scope": {"close_timeout": 0.2}})
    )
    result, _ = await run_agent(factory, "use", {"names": ["a", "hanging_close"]})
    assert result.status is RunStatus.SUCCEEDED
    assert recording.log[-2:] == ["close hanging_close (hanging)", "close a"]
    assert any(
        e["event"] == "scoped resource did not close in time; abandoned"
        and e["resource"] == "hanging_close"
        for e in captured_logs
    )


async def test_a_resource_that_fails_to_open_fails_the_run_with_a_clear_error(
    make_engine_factory, recording
) -> None:
    factory = make_engine_factory(plugins=[recording])
    result, events = await run_agent(factory, "use", {"names": ["a", "broken_open"]})
    assert result.status is RunStatus.FAILED
    assert result.error_type == "ScopedResourceError"
    assert "'broken_open' (plugin 'recording') failed to open" in (result.error or "")
    assert "ConnectionRefusedError: db is down" in (result.error or "")
    assert recording.log == ["open a", "close a"]
    assert_event_sequence(events, ["agent_started", "agent_error", "agent_completed"])


async def test_an_unknown_resource_names_the_declared_ones(make_engine_factory, recording) -> None:
    factory = make_engine_factory(plugins=[recording])
    result, _ = await run_agent(factory, "use", {"names": ["dbb"]})
    assert result.status is RunStatus.FAILED
    assert result.error_type == "UnknownResourceError"
    assert "no scoped resource named 'dbb'" in (result.error or "")
    assert "a, b, broken_close, broken_open, c, hanging_close" in (result.error or "")


async def test_the_scope_is_unusable_after_its_run(make_engine_factory, recording) -> None:
    factory = make_engine_factory(plugins=[recording])
    async with factory.user_execution_engine(UserExecutionContext.for_user("alice")) as engine:
        handle = await engine.start_run("late", {})
        await handle.result()
        scope = handle._run.state["scope"]
    assert isinstance(scope, RequestScope)
    assert scope.closed
    with pytest.raises(EngineClosedError, match=r"scope of run .* is closed"):
        await scope["a"]


def test_the_empty_scope_says_no_resource_is_declared() -> None:
    with pytest.raises(UnknownResourceError, match="declared resources: none"):
        EMPTY_SCOPE["db"]
    assert "db" not in EMPTY_SCOPE
    assert EMPTY_SCOPE.opened == []


async def test_without_resources_no_extension_is_installed(make_engine_factory) -> None:
    @agent(name="wants_db")
    async def wants_db(run: RunContext) -> Any:
        """Asks for a resource nobody declared."""
        return await run.scope["db"]

    class Only:
        name = "only"

        @hookimpl
        def agentengine_register_agents(self, registry: Any) -> None:
            registry.add(wants_db)

    factory = make_engine_factory(plugins=[Only()])
    result, _ = await run_agent(factory, "wants_db", {})
    assert result.status is RunStatus.FAILED
    assert "no scoped resource named 'db'; declared resources: none" in (result.error or "")
    async with factory.user_execution_engine(UserExecutionContext.for_user("x")) as engine:
        assert engine._extensions == ()  # no resource declared: no per-run layer


def test_bad_declarations_are_refused_with_what_to_change() -> None:
    registry = ResourceRegistry()
    registry.current_plugin = "one"

    @contextlib.asynccontextmanager
    async def db() -> Any:
        yield 1

    registry.add("db", db)
    registry.current_plugin = "two"
    with pytest.raises(
        RegistrationError, match="declared twice: by plugin 'one' and by plugin 'two'"
    ):
        registry.add("db", db)
    with pytest.raises(RegistrationError, match="must be callable"):
        registry.add("x", 42)  # type: ignore[arg-type]
    with pytest.raises(RegistrationError, match="takes 2 required arguments"):
        registry.add("y", lambda run, other: None)
    with pytest.raises(RegistrationError, match="non-empty name"):
        registry.add(" ", db)


async def test_a_factory_that_returns_no_context_manager_is_reported(make_engine_factory) -> None:
    class Wrong:
        name = "wrong"

        @hookimpl
        def agentengine_register_resources(self, registry: ResourceRegistry) -> None:
            registry.add("conn", lambda: "not a context manager")

        @hookimpl
        def agentengine_register_agents(self, registry: Any) -> None:
            @agent(name="uses_conn")
            async def uses_conn(run: RunContext) -> Any:
                """Asks for conn."""
                return await run.scope["conn"]

            registry.add(uses_conn)

    factory = make_engine_factory(plugins=[Wrong()])
    result, _ = await run_agent(factory, "uses_conn", {})
    assert result.status is RunStatus.FAILED
    assert "returned str, not an async context manager" in (result.error or "")
    assert "@contextlib.asynccontextmanager" in (result.error or "")


async def test_two_plugins_declaring_one_name_record_the_second_as_failed(
    make_engine_factory,
) -> None:
    def declaring(plugin_name: str) -> Any:
        class Declares:
            name = plugin_name

            @hookimpl
            def agentengine_register_resources(self, registry: ResourceRegistry) -> None:
                registry.add("db", contextlib.nullcontext)

        return Declares()

    # Recorded, not raised: the kit's factories are strict unless told otherwise.
    factory = make_engine_factory(
        plugins=[declaring("first"), declaring("second")], strict_plugins=False
    )
    errors = {i.name: i.error for i in factory.plugin_infos if i.error}
    assert list(errors) == ["second"]
    assert "declared twice: by plugin 'first' and by plugin 'second'" in errors["second"]
    assert factory.resources.get("db").plugin == "first"


async def test_a_cancelled_opener_does_not_cancel_another_task_waiting_for_the_same_resource(
    make_engine_factory,
) -> None:
    opened = asyncio.Event()
    attempts: list[int] = []

    class Slow:
        name = "slow"

        @hookimpl
        def agentengine_register_resources(self, registry: ResourceRegistry) -> None:
            @contextlib.asynccontextmanager
            async def slow() -> Any:
                attempts.append(len(attempts) + 1)
                if len(attempts) == 1:
                    opened.set()
                    await asyncio.sleep(60)  # the first opening is cancelled meanwhile
                yield f"attempt-{len(attempts)}"

            registry.add("slow", slow)

        @hookimpl
        def agentengine_register_agents(self, registry: Any) -> None:
            @agent(name="race")
            async def race(run: RunContext) -> str:
                """Two tasks want the resource; the first opener is cancelled."""
                first = asyncio.create_task(run.scope.get("slow"))
                await opened.wait()
                second = asyncio.create_task(run.scope.get("slow"))
                await asyncio.sleep(0.01)
                first.cancel()
                return str(await second)

            registry.add(race)

    factory = make_engine_factory(plugins=[Slow()])
    result, _ = await run_agent(factory, "race", {})
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert result.output == "attempt-2"
    assert attempts == [1, 2]


async def test_a_resource_opened_by_a_straggling_task_after_the_run_is_closed_again(
    make_engine_factory,
) -> None:
    log: list[str] = []
    release = asyncio.Event()
    straggler: list[asyncio.Task[Any]] = []

    class Slow:
        name = "slow"

        @hookimpl
        def agentengine_register_resources(self, registry: ResourceRegistry) -> None:
            @contextlib.asynccontextmanager
            async def slow() -> Any:
                await release.wait()
                log.append("open")
                yield "value"
                log.append("close")

            registry.add("slow", slow)

        @hookimpl
        def agentengine_register_agents(self, registry: Any) -> None:
            @agent(name="leaves_a_task")
            async def leaves_a_task(run: RunContext) -> str:
                """Starts opening a resource in a task it does not wait for."""
                straggler.append(asyncio.create_task(run.scope.get("slow")))
                await asyncio.sleep(0)
                return "done"

            registry.add(leaves_a_task)

    factory = make_engine_factory(plugins=[Slow()])
    result, _ = await run_agent(factory, "leaves_a_task", {})
    assert result.status is RunStatus.SUCCEEDED
    release.set()
    with pytest.raises(EngineClosedError, match="ended while scoped resource 'slow' was opening"):
        await straggler[0]
    assert log == ["open", "close"]
