"""MCP sessions and tool calls in traces: the session's opening and reopening are spans under
the tool call that caused them, and an MCP tool's span names its server."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import anyio
from agentengine import RunStatus, UserExecutionContext
from opentelemetry import trace
from tracing_helpers import exception_types, parent_id, sdk_tracing

from .conftest import make_factory, read_records, stdio_server


async def test_session_open_and_reconnect_are_spans_under_the_tool_call(
    record_file: Path,
) -> None:
    with sdk_tracing() as exporter:
        async with (
            make_factory(stdio_server(retry_initial=0.05)) as factory,
            factory.user_execution_engine(UserExecutionContext.for_user("alice")) as engine,
        ):
            args = {"tool": "srv.add", "args": {"a": 1, "b": 1}}
            first = await engine.execute_agent("call", args)
            (pid,) = {r["pid"] for r in read_records(record_file)}
            os.kill(pid, signal.SIGKILL)
            with anyio.fail_after(15):  # a call may fail on the dead connection first
                while True:
                    second = await engine.execute_agent("call", args)
                    if second.status is RunStatus.SUCCEEDED:
                        break
                    await anyio.sleep(0.05)
        spans = exporter.get_finished_spans()
    assert first.status is RunStatus.SUCCEEDED
    assert second.status is RunStatus.SUCCEEDED, second.error
    opens = [s for s in spans if s.name == "mcp.session.open srv"]
    reconnects = [s for s in spans if s.name == "mcp.session.reconnect srv"]
    assert len(opens) == 1
    assert len(reconnects) >= 1
    by_id = {s.context.span_id: s for s in spans}
    for session_span in (*opens, *reconnects):
        assert session_span.attributes is not None
        assert session_span.attributes["agentengine.mcp.server"] == "srv"
        # Opened lazily by a tool call: a child of that call's span, in the run's trace.
        tool_span = by_id[parent_id(session_span)]  # type: ignore[index]
        assert tool_span.name == "execute_tool srv.add"
        assert tool_span.attributes is not None
        assert tool_span.attributes["agentengine.mcp.server"] == "srv"
        assert by_id[parent_id(tool_span)].name == "invoke_agent call"  # type: ignore[index]
    assert reconnects[-1].attributes["agentengine.mcp.reconnect"] is True  # type: ignore[index]
    # A user's session is per user, yet no span of it names the user (opt-in, on runs only).
    for span in spans:
        assert "alice" not in json.dumps(dict(span.attributes or {})), span.name


async def test_a_server_that_cannot_start_fails_the_open_span_with_its_type(
    record_file: Path,
) -> None:
    server = stdio_server(command="/nonexistent/mcp-server-zz", args=[])
    with sdk_tracing() as exporter:
        async with (
            make_factory(server) as factory,
            factory.user_execution_engine(UserExecutionContext.for_user("alice")) as engine,
        ):
            result = await engine.execute_agent("call", {"tool": "srv.add", "args": {}})
        spans = exporter.get_finished_spans()
    assert result.status is RunStatus.FAILED
    (open_span,) = [s for s in spans if s.name == "mcp.session.open srv"]
    assert open_span.status.status_code == trace.StatusCode.ERROR
    # Recorded by the SDK with the qualified name of the type.
    assert exception_types(open_span) == ["agentengine_mcp.session.SessionOpenError"]
