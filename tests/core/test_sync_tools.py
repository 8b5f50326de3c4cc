"""Plain (``def``) tools: run in a worker thread, never on the event loop; a timeout reports
the call timed out while the thread runs on."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
import structlog
from agentengine import (
    ExecutionEngineFactory,
    RegistrationError,
    RunContext,
    RunStatus,
    ToolError,
    UserExecutionContext,
    agent,
    hookimpl,
    tool,
)
from agentengine.testing.conformance import check_plugin
from structlog.testing import capture_logs

release = threading.Event()  # set by the test: lets the blocking tools return
finished = threading.Event()  # set by a blocking tool when it returns
seen: dict[str, Any] = {}


@tool
def blocking_lookup(run: RunContext, key: str) -> str:
    """Look a key up with a blocking driver (waits until the test releases it)."""
    seen["thread"] = threading.get_ident()
    seen["user_id"] = run.user_id
    structlog.get_logger("acme.db").info("querying", key=key)
    assert release.wait(30), "the test never released the tool"
    return f"value of {key}"


@tool(timeout=0.05)
def hanging(key: str) -> str:
    """A blocking call that outlives its timeout."""
    assert release.wait(30), "the test never released the tool"
    finished.set()
    return key


@agent(name="uses-blocking")
async def uses_blocking(run: RunContext, key: str) -> str:
    return str(await run.call_tool("blocking_lookup", {"key": key}))


@agent(name="uses-hanging")
async def uses_hanging(run: RunContext) -> str:
    try:
        await run.call_tool("hanging", {"key": "k"})
    except ToolError as exc:
        return f"went on after {exc.status}"
    return "the tool returned"


class SyncToolsPlugin:
    name = "sync-tools"

    @hookimpl
    def agentengine_register_tools(self, registry: Any) -> None:
        registry.add(blocking_lookup)
        registry.add(hanging)

    @hookimpl
    def agentengine_register_agents(self, registry: Any) -> None:
        registry.add(uses_blocking)
        registry.add(uses_hanging)


@pytest.fixture(autouse=True)
def _reset() -> None:
    release.clear()
    finished.clear()
    seen.clear()


async def test_a_sync_tool_runs_in_a_thread_and_the_loop_goes_on() -> None:
    factory = ExecutionEngineFactory(plugins=[SyncToolsPlugin()], load_entrypoints=False)
    ctx = UserExecutionContext.for_user("alice")
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        async with factory, factory.user_execution_engine(ctx) as engine:
            handle = await engine.start_run("uses-blocking", {"key": "k1"})
            async for event in handle:
                # The tool is blocked in its thread, yet this loop still delivers events:
                # it released the tool only once it saw the call start.
                if event.type == "tool_executing":
                    release.set()
            result = await handle.result()
    assert result.status is RunStatus.SUCCEEDED and result.output == "value of k1"
    assert seen["thread"] != threading.get_ident() and seen["user_id"] == "alice"
    # The thread ran in a copy of the run's context: its log lines carry the run's ids.
    (line,) = [e for e in logs if e["event"] == "querying"]
    assert (line["user_id"], line["run_id"], line["agent"]) == (
        "alice",
        result.run_id,
        "uses-blocking",
    )


async def test_a_timed_out_sync_tool_is_reported_while_its_thread_runs_on() -> None:
    factory = ExecutionEngineFactory(plugins=[SyncToolsPlugin()], load_entrypoints=False)
    ctx = UserExecutionContext.for_user("bob")
    async with factory, factory.user_execution_engine(ctx) as engine:
        result = await engine.execute_agent("uses-hanging", {})
    assert result.status is RunStatus.SUCCEEDED and result.output == "went on after timeout"
    (completed,) = [e for e in result.events if e.type == "tool_completed"]
    assert completed.status == "timeout" and "timed out after 0.05s" in (completed.error or "")
    assert not finished.is_set()  # the thread is still in the function: a thread cannot be stopped
    release.set()
    assert await asyncio.to_thread(finished.wait, 30)  # and ends when the function returns


async def test_calling_a_sync_tool_directly_and_registration_rules() -> None:
    @tool
    def double(n: int) -> int:
        """Twice n."""
        return 2 * n

    assert await double(n=4) == 8
    assert not double.is_async and double.input_schema["properties"]["n"]["type"] == "integer"

    class AsyncCallable:
        __name__ = "async_callable"

        async def __call__(self, text: str) -> str:
            return text

    assert tool(AsyncCallable(), name="async_callable").is_async

    def numbers(n: int) -> Any:
        yield n

    with pytest.raises(RegistrationError, match="is a generator"):
        tool(numbers)

    def sync_agent(run: RunContext) -> str:
        return "x"

    with pytest.raises(RegistrationError, match=r"awaits run.think\(\).*plain 'def' @tool"):
        agent(sync_agent)

    class Plugin:
        name = "sync"

        @hookimpl
        def agentengine_register_tools(self, registry: Any) -> None:
            registry.add(double)

    assert check_plugin(Plugin()) == []


async def test_a_sync_function_returning_an_awaitable_is_a_clear_tool_error() -> None:
    async def later() -> int:
        return 1

    @tool
    def sneaky() -> Any:
        """Returns a coroutine from a plain def."""
        return later()

    @agent(name="calls-sneaky")
    async def calls_sneaky(run: RunContext) -> str:
        try:
            await run.call_tool("sneaky", {})
        except ToolError as exc:
            return exc.message
        return "no error"

    class Plugin:
        @hookimpl
        def agentengine_register_tools(self, registry: Any) -> None:
            registry.add(sneaky)

        @hookimpl
        def agentengine_register_agents(self, registry: Any) -> None:
            registry.add(calls_sneaky)

    factory = ExecutionEngineFactory(plugins=[Plugin()], load_entrypoints=False)
    async with factory, factory.user_execution_engine(UserExecutionContext.for_user("c")) as e:
        result = await e.execute_agent("calls-sneaky", {})
    assert "returned an awaitable from a worker thread; define its function with 'async def'" in (
        result.output
    )
