"""Sessions are per user: each carries its own user's credentials, under concurrency."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
from agentengine import RunStatus, UserExecutionContext

from .conftest import HttpServer, make_factory, read_records, stdio_server

USERS = {f"user-{i}": f"token-{i}-{'x' * i}" for i in range(4)}
CALLS_PER_USER = 15


async def _run_users(factory: Any, tool: str) -> dict[str, list[Any]]:
    outputs: dict[str, list[Any]] = {}

    async def one_user(user_id: str, token: str) -> None:
        ctx = UserExecutionContext.for_user(user_id, metadata={"mcp_token": token})
        async with factory.user_execution_engine(ctx) as engine:
            calls = [[tool, {"user": user_id}] for _ in range(CALLS_PER_USER)]
            # Two concurrent runs per user share that user's one session.
            results = []

            async def run() -> None:
                results.append(await engine.execute_agent("calls", {"calls": calls}))

            async with anyio.create_task_group() as group:
                group.start_soon(run)
                group.start_soon(run)
        for result in results:
            assert result.status is RunStatus.SUCCEEDED, result.error
        outputs[user_id] = [o for r in results for o in r.output]

    async with anyio.create_task_group() as group:
        for user_id, token in USERS.items():
            group.start_soon(one_user, user_id, token)
    return outputs


def _check(records: list[dict[str, Any]], outputs: dict[str, list[Any]]) -> None:
    whoami = [r for r in records if r["tool"] == "whoami"]
    assert len(whoami) == len(USERS) * CALLS_PER_USER * 2
    wrong = [r for r in whoami if r["identity"] != USERS[r["claimed"]]]
    assert wrong == []
    for user_id, seen in outputs.items():
        assert seen == [USERS[user_id]] * (CALLS_PER_USER * 2)


async def test_stdio_sessions_carry_each_users_environment(record_file: Path) -> None:
    server = stdio_server(env={"MCP_TEST_IDENTITY": "{metadata[mcp_token]}"})
    async with make_factory(server, max_concurrent_per_user=4) as factory:
        outputs = await _run_users(factory, "srv.whoami")
    records = read_records(record_file)
    _check(records, outputs)
    # One server process per user session: no process served two identities.
    identities_by_pid: dict[int, set[str]] = {}
    for record in records:
        identities_by_pid.setdefault(record["pid"], set()).add(record["identity"])
    assert len(identities_by_pid) == len(USERS)
    assert all(len(ids) == 1 for ids in identities_by_pid.values())


async def test_http_sessions_carry_each_users_header(
    http_server: HttpServer, record_file: Path
) -> None:
    server = {
        "name": "web",
        "url": http_server.url,
        "headers": {"X-User-Token": "{metadata[mcp_token]}"},
    }
    async with make_factory(server, max_concurrent_per_user=4) as factory:
        outputs = await _run_users(factory, "web.whoami")
    _check(read_records(record_file), outputs)


async def test_missing_per_user_credential_fails_the_call_and_never_falls_back(
    record_file: Path,
) -> None:
    server = stdio_server(env={"MCP_TEST_IDENTITY": "{metadata[mcp_token]}"})
    async with (
        make_factory(server) as factory,
        factory.user_execution_engine(UserExecutionContext.for_user("nobody")) as engine,
    ):
        result = await engine.execute_agent("call", {"tool": "srv.whoami", "args": {"user": "x"}})
    assert result.status is RunStatus.FAILED
    completed = next(e for e in result.events if e.type == "tool_completed")
    assert completed.status == "error"
    assert "no metadata['mcp_token']" in completed.error
    assert "env 'MCP_TEST_IDENTITY'" in completed.error
    assert read_records(record_file) == []  # nothing was started or called
