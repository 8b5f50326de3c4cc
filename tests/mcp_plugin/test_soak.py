"""Many users, each with their own credentials, while the HTTP server is killed and restarted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from agentengine import RunStatus, UserExecutionContext

from .conftest import HttpServer, make_factory, read_records

USERS = 12
RUNS_PER_USER = 6


@pytest.mark.slow
async def test_identity_and_event_invariants_survive_server_restarts(
    http_server: HttpServer, record_file: Path
) -> None:
    server = {
        "name": "web",
        "url": http_server.url,
        "headers": {"X-User-Token": "{metadata[mcp_token]}"},
        "retry_initial": 0.05,
        "retry_max": 0.5,
        "call_timeout": 10.0,
    }
    results: list[Any] = []
    tokens = {f"u{i}": f"secret-{i}" for i in range(USERS)}

    async def user(user_id: str) -> None:
        ctx = UserExecutionContext.for_user(user_id, metadata={"mcp_token": tokens[user_id]})
        async with factory.user_execution_engine(ctx) as engine:
            for _ in range(RUNS_PER_USER):
                calls = [["web.whoami", {"user": user_id}] for _ in range(5)]
                results.append((user_id, await engine.execute_agent("calls", {"calls": calls})))
                await anyio.sleep(0.05)

    async def chaos() -> None:
        for _ in range(2):
            await anyio.sleep(0.4)
            http_server.kill()
            await anyio.sleep(0.2)
            await anyio.to_thread.run_sync(http_server.start)

    async with make_factory(server, max_concurrent_per_user=2) as factory:
        with anyio.fail_after(90):
            async with anyio.create_task_group() as group:
                group.start_soon(chaos)
                for user_id in tokens:
                    group.start_soon(user, user_id)

    assert len(results) == USERS * RUNS_PER_USER
    ok_calls = failed_calls = 0
    for user_id, result in results:
        assert result.status is RunStatus.SUCCEEDED, result.error
        types = [e.type for e in result.events]
        assert types[0] == "agent_started"
        assert types[-1] == "agent_completed"
        assert [e.seq for e in result.events] == list(range(1, len(types) + 1))
        assert {e.user_id for e in result.events} == {user_id}
        executing = sorted(e.tool_call_id for e in result.events if e.type == "tool_executing")
        completed = sorted(e.tool_call_id for e in result.events if e.type == "tool_completed")
        assert executing == completed
        for output in result.output:
            if isinstance(output, dict):  # a call that failed during a restart
                assert "MCP server 'web'" in output["error"]
                failed_calls += 1
            else:
                assert output == tokens[user_id]
                ok_calls += 1
    records = [r for r in read_records(record_file) if r["tool"] == "whoami"]
    # Every call the server saw carried the identity of the user it was made for.
    assert [r for r in records if r["identity"] != tokens[r["claimed"]]] == []
    assert ok_calls > 0
    assert failed_calls > 0  # the restarts did hit calls in flight
    assert ok_calls <= len(records)
