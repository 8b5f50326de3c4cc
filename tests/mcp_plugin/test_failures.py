"""Servers that fail: cannot start, die mid-call, go away and come back."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import anyio
from agentengine import RunStatus, UserExecutionContext
from agentengine_mcp import MCPPlugin

from .conftest import (
    SERVER,
    HttpServer,
    free_port,
    make_factory,
    read_records,
    stdio_server,
    wait_for_record,
)

CALL_TIMEOUT = 20.0


def _completed(result: Any) -> list[Any]:
    return [e for e in result.events if e.type == "tool_completed"]


def _check_run_shape(result: Any) -> None:
    """The event invariants hold whatever happened."""
    types = [e.type for e in result.events]
    assert types[0] == "agent_started"
    assert types[-1] == "agent_completed"
    assert types.count("agent_started") == 1
    assert types.count("agent_completed") == 1
    assert [e.seq for e in result.events] == list(range(1, len(types) + 1))
    executing = [e.tool_call_id for e in result.events if e.type == "tool_executing"]
    assert sorted(executing) == sorted(e.tool_call_id for e in _completed(result))


async def test_stdio_server_killed_mid_call_fails_the_call_then_recovers(
    record_file: Path,
) -> None:
    server = stdio_server(call_timeout=CALL_TIMEOUT, retry_initial=0.05)
    async with (
        make_factory(server) as factory,
        factory.user_execution_engine(UserExecutionContext.for_user("alice")) as engine,
    ):
        handle = await engine.start_run("call", {"tool": "srv.slow", "args": {"seconds": 60}})
        started = await wait_for_record(record_file, tool="slow", event="started")
        os.kill(started["pid"], signal.SIGKILL)
        with anyio.fail_after(CALL_TIMEOUT + 10):  # a bound for the test, not the assertion
            result = await handle.result()
        after = await engine.execute_agent("call", {"tool": "srv.add", "args": {"a": 1, "b": 1}})
        status = factory_status(factory)
    _check_run_shape(result)
    assert result.status is RunStatus.FAILED
    (completed,) = _completed(result)
    # "error", not "timeout": the call ended when the server died, before its timeout.
    assert completed.status == "error"
    assert "MCP server 'srv'" in completed.error
    assert "connection was lost during the call to 'slow'" in completed.error
    assert "reopened on the next call" in completed.error
    assert after.status is RunStatus.SUCCEEDED, after.error
    assert after.output == 2
    pids = {r["pid"] for r in read_records(record_file)}
    assert len(pids) == 2  # a new server process served the next call
    assert status["state"] == "connected"
    assert "connection was lost" in status["last_failure"]["reason"]


def factory_status(factory: Any) -> dict[str, Any]:
    """The MCP plugin's status entry of the only server."""
    plugin = next(i.plugin for i in factory.plugin_infos if isinstance(i.plugin, MCPPlugin))
    (entry,) = plugin.status()
    return dict(entry)


async def test_http_server_stopped_mid_call_fails_the_call_then_recovers(
    http_server: HttpServer, record_file: Path
) -> None:
    server = {
        "name": "web",
        "url": http_server.url,
        "call_timeout": CALL_TIMEOUT,
        "retry_initial": 0.05,
    }
    async with (
        make_factory(server) as factory,
        factory.user_execution_engine(UserExecutionContext.for_user("alice")) as engine,
    ):
        handle = await engine.start_run("call", {"tool": "web.slow", "args": {"seconds": 60}})
        await wait_for_record(record_file, tool="slow", event="started")
        http_server.kill()
        with anyio.fail_after(CALL_TIMEOUT + 10):
            result = await handle.result()
        # While the server is down, calls fail with the reason (and do not hang).
        down = await engine.execute_agent("call", {"tool": "web.add", "args": {"a": 1, "b": 1}})
        down_status = factory_status(factory)
        await anyio.to_thread.run_sync(http_server.start)
        with anyio.fail_after(CALL_TIMEOUT):
            while True:  # the session waits out its backoff, then reopens
                after = await engine.execute_agent(
                    "call", {"tool": "web.add", "args": {"a": 2, "b": 2}}
                )
                if after.status is RunStatus.SUCCEEDED:
                    break
                await anyio.sleep(0.1)
    _check_run_shape(result)
    (completed,) = _completed(result)
    assert completed.status == "error"
    assert "connection was lost during the call to 'slow'" in completed.error
    assert down.status is RunStatus.FAILED
    (down_completed,) = _completed(down)
    assert down_completed.status == "error"
    assert "could not be reached" in down_completed.error
    assert down_status["state"] in ("failed", "retrying")
    assert "could not be reached" in down_status["error"]
    assert after.output == 4


async def test_server_that_cannot_start_names_the_command_and_others_keep_working(
    record_file: Path,
) -> None:
    broken = {"name": "broken", "command": "agentengine-no-such-mcp-server", "args": ["--x"]}
    crashing = {
        "name": "crashing",
        "command": sys.executable,
        "args": ["-c", "import sys; sys.stderr.write('boom: bad config\\n'); sys.exit(3)"],
    }
    async with (
        make_factory(broken, crashing, stdio_server()) as factory,
        factory.user_execution_engine(UserExecutionContext.for_user("alice")) as engine,
    ):
        result = await engine.execute_agent(
            "calls",
            {
                "calls": [
                    ["broken.anything", {}],
                    ["crashing.anything", {}],
                    ["srv.add", {"a": 1, "b": 2}],
                    ["broken.anything", {}],
                ]
            },
        )
        plugin = next(i.plugin for i in factory.plugin_infos if isinstance(i.plugin, MCPPlugin))
        status = {s["server"]: s for s in plugin.status()}
    assert result.status is RunStatus.SUCCEEDED, result.error
    not_found, crashed, ok, again = result.output
    assert "MCP server 'broken' (stdio: agentengine-no-such-mcp-server --x)" in not_found["error"]
    assert "failed to start" in not_found["error"]
    assert "No such file" in not_found["error"] or "not found" in not_found["error"]
    assert "MCP server 'crashing'" in crashed["error"]
    assert "boom: bad config" in crashed["error"]  # the server's stderr explains why
    assert ok == 3
    # The second attempt comes within the backoff: it fails at once or after a short wait,
    # either way with the reason.
    assert "MCP server 'broken'" in again["error"]
    assert status["broken"]["state"] in ("failed", "retrying", "misconfigured")
    assert "agentengine-no-such-mcp-server" in status["broken"]["error"]
    assert status["srv"]["state"] == "connected"
    assert status["crashing"]["state"] in ("failed", "retrying")


async def test_backoff_doubles_and_is_bounded(record_file: Path) -> None:
    port = free_port()  # nothing listens there
    server = {
        "name": "gone",
        "url": f"http://127.0.0.1:{port}/mcp",
        "retry_initial": 0.05,
        "retry_max": 0.2,
        "call_timeout": 5.0,
    }
    async with (
        make_factory(server) as factory,
        factory.user_execution_engine(UserExecutionContext.for_user("alice")) as engine,
    ):
        ext_session = None
        delays = []
        for _ in range(5):
            result = await engine.execute_agent("call", {"tool": "gone.x"})
            assert result.status is RunStatus.FAILED
            plugin = next(i.plugin for i in factory.plugin_infos if isinstance(i.plugin, MCPPlugin))
            (ext_session,) = plugin.sessions()
            delays.append(ext_session.retry_delay)
            assert "could not be reached" in (result.error or "")
        assert ext_session is not None
        assert ext_session.failures == 5
    # Each call waited out the previous delay, tried, failed, and doubled the next one.
    assert delays == [0.05, 0.1, 0.2, 0.2, 0.2]


async def test_hanging_server_hits_startup_timeout(record_file: Path) -> None:
    hanging = {
        "name": "mute",
        "command": sys.executable,
        "args": ["-c", "import time; time.sleep(120)"],
        "startup_timeout": 0.5,
    }
    async with (
        make_factory(hanging) as factory,
        factory.user_execution_engine(UserExecutionContext.for_user("alice")) as engine,
    ):
        with anyio.fail_after(30):
            result = await engine.execute_agent("call", {"tool": "mute.x"})
    assert result.status is RunStatus.FAILED
    (completed,) = _completed(result)
    assert "did not complete the MCP handshake within 0.5s" in completed.error


async def test_slow_call_times_out_and_the_session_stays_usable(record_file: Path) -> None:
    server = stdio_server(call_timeout=0.5)
    async with (
        make_factory(server) as factory,
        factory.user_execution_engine(UserExecutionContext.for_user("alice")) as engine,
    ):
        slow = await engine.execute_agent("call", {"tool": "srv.slow", "args": {"seconds": 30}})
        fast = await engine.execute_agent("call", {"tool": "srv.add", "args": {"a": 1, "b": 2}})
    (completed,) = _completed(slow)
    assert completed.status == "timeout"
    assert "timed out after 0.5s" in completed.error
    assert fast.output == 3
    assert len({r["pid"] for r in read_records(record_file)}) == 1


async def test_engine_cleanup_stops_the_users_stdio_servers(record_file: Path) -> None:
    async with make_factory(stdio_server()) as factory:
        async with factory.user_execution_engine(UserExecutionContext.for_user("a")) as engine:
            await engine.execute_agent("call", {"tool": "srv.add", "args": {"a": 1, "b": 2}})
            (pid,) = {r["pid"] for r in read_records(record_file)}
            assert _alive(pid)
        with anyio.fail_after(15):
            while _alive(pid):  # noqa: ASYNC110 - polling another process, no event to wait on
                await anyio.sleep(0.05)
        plugin = next(i.plugin for i in factory.plugin_infos if isinstance(i.plugin, MCPPlugin))
        assert plugin.sessions() == []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


assert SERVER.exists()


async def test_cancelled_run_cancels_the_call_and_keeps_the_session(record_file: Path) -> None:
    async with (
        make_factory(stdio_server()) as factory,
        factory.user_execution_engine(UserExecutionContext.for_user("alice")) as engine,
    ):
        handle = await engine.start_run("call", {"tool": "srv.slow", "args": {"seconds": 60}})
        await wait_for_record(record_file, tool="slow", event="started")
        with anyio.fail_after(15):
            await handle.cancel()
        result = await handle.result()
        after = await engine.execute_agent("call", {"tool": "srv.add", "args": {"a": 1, "b": 1}})
    _check_run_shape(result)
    assert result.status is RunStatus.CANCELLED
    (completed,) = _completed(result)
    assert completed.status == "cancelled"
    assert after.output == 2
    assert len({r["pid"] for r in read_records(record_file)}) == 1


async def test_engine_cleanup_during_a_call_ends_the_run_and_stops_the_server(
    record_file: Path,
) -> None:
    async with make_factory(stdio_server()) as factory:
        engine = await factory.create_for_user(UserExecutionContext.for_user("alice"))
        handle = await engine.start_run("call", {"tool": "srv.slow", "args": {"seconds": 60}})
        started = await wait_for_record(record_file, tool="slow", event="started")
        with anyio.fail_after(20):
            await engine.cleanup()
        result = await handle.result()
        with anyio.fail_after(15):
            while _alive(started["pid"]):  # noqa: ASYNC110 - polling another process
                await anyio.sleep(0.05)
    _check_run_shape(result)
    assert result.status is RunStatus.CANCELLED


async def test_stdio_server_killed_while_idle_is_reopened_by_the_next_call(
    record_file: Path,
) -> None:
    async with (
        make_factory(stdio_server(retry_initial=0.05)) as factory,
        factory.user_execution_engine(UserExecutionContext.for_user("alice")) as engine,
    ):
        first = await engine.execute_agent("call", {"tool": "srv.add", "args": {"a": 1, "b": 1}})
        (pid,) = {r["pid"] for r in read_records(record_file)}
        os.kill(pid, signal.SIGKILL)
        # The session notices on its own (end of the server's output) that the server died.
        with anyio.fail_after(15):
            while factory_status(factory)["state"] == "connected":  # noqa: ASYNC110
                await anyio.sleep(0.02)
        assert "the connection was lost" in factory_status(factory)["error"]
        second = await engine.execute_agent("call", {"tool": "srv.add", "args": {"a": 2, "b": 2}})
    assert first.output == 2
    assert second.status is RunStatus.SUCCEEDED, second.error
    assert second.output == 4
    assert len({r["pid"] for r in read_records(record_file)}) == 2


async def test_http_server_restarted_while_idle_is_reopened_by_the_next_call(
    http_server: HttpServer, record_file: Path
) -> None:
    server = {"name": "web", "url": http_server.url, "retry_initial": 0.05}
    async with (
        make_factory(server) as factory,
        factory.user_execution_engine(UserExecutionContext.for_user("alice")) as engine,
    ):
        first = await engine.execute_agent("call", {"tool": "web.add", "args": {"a": 1, "b": 1}})
        http_server.kill()
        # The session notices on its own (its event stream drops) that the server is gone.
        with anyio.fail_after(15):
            while factory_status(factory)["state"] == "connected":  # noqa: ASYNC110
                await anyio.sleep(0.02)
        noticed = factory_status(factory)
        await anyio.to_thread.run_sync(http_server.start)
        second = await engine.execute_agent("call", {"tool": "web.add", "args": {"a": 2, "b": 2}})
    assert first.output == 2
    assert "the connection was lost" in noticed["error"]
    assert second.status is RunStatus.SUCCEEDED, second.error
    assert second.output == 4
