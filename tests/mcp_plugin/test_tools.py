"""MCP tools as agentengine tools, against real servers (stdio, HTTP, mcp-server-time)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agentengine import (
    ExecutionEngineFactory,
    RunContext,
    RunStatus,
    ToolError,
    UserExecutionContext,
    agent,
    hookimpl,
)
from agentengine_mcp import MCPTool, list_tools

from .conftest import HttpServer, make_factory, read_records, stdio_server


def _tool_events(result: Any) -> list[Any]:
    return [e for e in result.events if e.type in ("tool_executing", "tool_completed")]


async def test_stdio_tool_call_emits_events_and_returns_the_result(record_file: Path) -> None:
    async with (
        make_factory(stdio_server()) as factory,
        factory.user_execution_engine(UserExecutionContext.for_user("alice")) as engine,
    ):
        result = await engine.execute_agent("call", {"tool": "srv.add", "args": {"a": 2, "b": 3}})
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert result.output == 5
    executing, completed = _tool_events(result)
    assert executing.tool == "srv.add"
    assert executing.args == {"a": 2, "b": 3}
    assert completed.status == "ok"
    assert completed.result == 5
    assert completed.tool_call_id == executing.tool_call_id


async def test_http_tool_call(http_server: HttpServer) -> None:
    server = {"name": "web", "url": http_server.url}
    async with (
        make_factory(server) as factory,
        factory.user_execution_engine(UserExecutionContext.for_user("alice")) as engine,
    ):
        result = await engine.execute_agent("call", {"tool": "web.add", "args": {"a": 40, "b": 2}})
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert result.output == 42


async def test_third_party_time_server(time_factory: ExecutionEngineFactory) -> None:
    async with time_factory.user_execution_engine(UserExecutionContext.for_user("ann")) as engine:
        result = await engine.execute_agent(
            "call", {"tool": "time.get_current_time", "args": {"timezone": "Europe/Paris"}}
        )
        bad = await engine.execute_agent(
            "call", {"tool": "time.get_current_time", "args": {"timezone": "Mars/Olympus"}}
        )
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert result.output["timezone"] == "Europe/Paris"
    assert "T" in result.output["datetime"]
    # The server's own error answer becomes a readable tool error.
    assert bad.status is RunStatus.FAILED
    completed = _tool_events(bad)[-1]
    assert completed.status == "error"
    assert "Mars/Olympus" in completed.error


async def test_schema_validation_rejects_bad_arguments_without_contacting_the_server(
    record_file: Path,
) -> None:
    async with (
        make_factory(stdio_server()) as factory,
        factory.user_execution_engine(UserExecutionContext.for_user("alice")) as engine,
    ):
        result = await engine.execute_agent(
            "calls",
            {
                "calls": [
                    ["srv.add", {"a": "two", "b": 3}],
                    ["srv.add", {"a": 1}],
                    ["srv.add", {"a": 1, "b": 2}],
                ]
            },
        )
    assert result.status is RunStatus.SUCCEEDED, result.error
    first, second, third = result.output
    assert "invalid arguments for tool 'srv.add'" in first["error"]
    assert "a: 'two' is not of type 'integer'" in first["error"]
    assert "'b' is a required property" in second["error"]
    assert third == 3
    # Only the valid call reached the server.
    assert [r["tool"] for r in read_records(record_file)] == ["add"]
    completed = [e for e in result.events if e.type == "tool_completed"]
    assert [e.status for e in completed] == ["error", "error", "ok"]


async def test_error_result_and_unknown_and_denied_tools(record_file: Path) -> None:
    server = stdio_server(deny=["secret"])
    async with (
        make_factory(server) as factory,
        factory.user_execution_engine(UserExecutionContext.for_user("alice")) as engine,
    ):
        result = await engine.execute_agent(
            "calls",
            {
                "calls": [
                    ["srv.fail", {"message": "disk on fire"}],
                    ["srv.nope", {}],
                    ["srv.secret", {}],
                    ["other.add", {"a": 1, "b": 2}],
                ]
            },
        )
    assert result.status is RunStatus.SUCCEEDED, result.error
    failed, unknown, denied, other = (r["error"] for r in result.output)
    assert failed.endswith("disk on fire")
    assert "has no tool 'nope'" in unknown
    assert "srv.add" in unknown
    assert "has no tool 'secret' that is allowed" in denied
    assert "srv.secret" not in denied
    assert "no tool named 'other.add'" in other
    statuses = [e.status for e in result.events if e.type == "tool_completed"]
    assert statuses == ["error"] * 4


async def test_allow_list_and_custom_prefix(record_file: Path) -> None:
    server = stdio_server(allow=["add", "who*"], prefix="calc:")

    seen: list[list[str]] = []

    @agent(name="lister")
    async def lister(run: RunContext) -> list[str]:
        tools = await list_tools(run)
        assert all(isinstance(t, MCPTool) for t in tools)
        seen.append([t.name for t in tools])
        return next(t.input_schema["required"] for t in tools if t.name == "calc:add")

    class Extra:
        @hookimpl
        def agentengine_register_agents(self, registry: Any) -> None:
            registry.add(lister)

    factory = make_factory(server, extra=(Extra(),))
    async with (
        factory,
        factory.user_execution_engine(UserExecutionContext.for_user("alice")) as engine,
    ):
        result = await engine.execute_agent("lister")
        add = await engine.execute_agent("call", {"tool": "calc:add", "args": {"a": 1, "b": 1}})
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert seen == [["calc:add", "calc:whoami"]]
    assert result.output == ["a", "b"]
    assert add.output == 2


async def test_tool_list_is_refreshed_on_list_changed(record_file: Path) -> None:
    async with (
        make_factory(stdio_server()) as factory,
        factory.user_execution_engine(UserExecutionContext.for_user("alice")) as engine,
    ):
        before = await engine.execute_agent("call", {"tool": "srv.extra"})
        grown = await engine.execute_agent("call", {"tool": "srv.grow"})
        assert grown.status is RunStatus.SUCCEEDED, grown.error
        # The notification arrives asynchronously; the next lookups see the new list.
        import anyio

        after = None
        with anyio.fail_after(10):
            while after is None or after.status is not RunStatus.SUCCEEDED:
                after = await engine.execute_agent("call", {"tool": "srv.extra"})
                await anyio.sleep(0.05)
    assert before.status is RunStatus.FAILED
    assert "has no tool 'extra'" in (before.error or "")
    assert after.output == "extra"


async def test_tool_error_is_catchable_by_the_agent(record_file: Path) -> None:
    caught: list[ToolError] = []

    @agent(name="catcher")
    async def catcher(run: RunContext) -> str:
        try:
            await run.call_tool("srv.fail", {"message": "nope"})
        except ToolError as exc:
            caught.append(exc)
        return "went on"

    class Extra:
        @hookimpl
        def agentengine_register_agents(self, registry: Any) -> None:
            registry.add(catcher)

    factory = make_factory(stdio_server(), extra=(Extra(),))
    async with (
        factory,
        factory.user_execution_engine(UserExecutionContext.for_user("alice")) as engine,
    ):
        result = await engine.execute_agent("catcher")
    assert result.output == "went on"
    assert caught[0].message.endswith("nope")
    assert caught[0].tool == "srv.fail"


async def test_in_process_server_each_engine_has_its_own_session() -> None:
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("inproc")

    @server.tool()
    async def shout(text: str) -> str:
        """Upper-case a text."""
        return text.upper()

    factory = make_factory({"name": "local", "server": server})
    async with factory:
        async with (
            factory.user_execution_engine(UserExecutionContext.for_user("a")) as first,
            factory.user_execution_engine(UserExecutionContext.for_user("b")) as second,
        ):
            one = await first.execute_agent("call", {"tool": "local.shout", "args": {"text": "hi"}})
            two = await second.execute_agent(
                "call", {"tool": "local.shout", "args": {"text": "yo"}}
            )
            plugin = next(i.plugin for i in factory.plugin_infos if i.name == "mcp")
            sessions = plugin.sessions()
            (status,) = plugin.status()
        assert one.output == "HI"
        assert two.output == "YO"
        assert len(sessions) == 2
        assert {s.context.user_id for s in sessions} == {"a", "b"}
        assert status["state"] == "connected"
        assert status["sessions"] == {"connected": 2}
        assert status["transport"] == "in-process"


async def test_list_tools_skips_a_server_that_is_down(record_file: Path) -> None:
    names: list[list[str]] = []

    @agent(name="lister")
    async def lister(run: RunContext) -> None:
        names.append([t.name for t in await list_tools(run)])
        names.append([t.name for t in await list_tools(run, "broken")])

    class Extra:
        @hookimpl
        def agentengine_register_agents(self, registry: Any) -> None:
            registry.add(lister)

    broken = {"name": "broken", "command": "agentengine-no-such-mcp-server"}
    factory = make_factory(broken, stdio_server(deny=["grow", "secret"]), extra=(Extra(),))
    async with (
        factory,
        factory.user_execution_engine(UserExecutionContext.for_user("alice")) as engine,
    ):
        result = await engine.execute_agent("lister")
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert names == [["srv.add", "srv.fail", "srv.slow", "srv.whoami"], []]
