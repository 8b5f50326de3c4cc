"""A stream never stops because of what one event holds, against a real server.

Agents returning (or reporting) values JSON or UTF-8 cannot hold as such: a lone surrogate,
non-UTF-8 bytes, tuple dict keys, a reference cycle, an object whose ``str()`` raises. Every
stream of the user (WebSocket, SSE, resumed ones) carries each of their events, in its wire-safe
form or as an error item naming its cursor and seq, then goes on; the run records stay readable
(``GET /v1/runs`` never 500) with a JSON-safe output; and nothing is left for asyncio to report as
"Task exception was never retrieved". Also checked against a real ``agentengine serve``.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import signal
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from invariants import cursor_at, cursor_number
from server_helpers import (
    RunningServer,
    dev_token,
    http,
    make_token,
    recv_until,
    running_server,
    serve_process,
    sse_items,
    wait_run,
    ws_connect,
)

HOSTILE_PLUGIN = textwrap.dedent(
    """
    from typing import Any
    from agentengine import RunContext, agent, hookimpl, tool

    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no str for you")

        __repr__ = __str__

    def _cycle() -> list[Any]:
        loop: list[Any] = []
        loop.append(loop)
        return loop

    VALUES = {
        "surrogate": lambda: "a\\ud800b",
        "bytes": lambda: b"\\xff\\xfe",
        "tuple_keys": lambda: {(1, 2): "pair"},
        "cycle": _cycle,
        "unprintable": Unprintable,
    }

    @tool
    async def hostile_tool(kind: str) -> Any:
        \"\"\"Return a hostile value.\"\"\"
        return VALUES[kind]()

    @agent(name="hostile")
    async def hostile(run: RunContext, kind: str) -> Any:
        \"\"\"Think a lone surrogate, call a tool returning the value, return it too.\"\"\"
        await run.think("thinking \\udc80 hard")
        await run.call_tool("hostile_tool", {"kind": kind})
        return VALUES[kind]()

    class HostilePlugin:
        name = "hostile"

        @hookimpl
        def agentengine_register_agents(self, registry):
            registry.add(hostile)

        @hookimpl
        def agentengine_register_tools(self, registry):
            registry.add(hostile_tool)

    plugin = HostilePlugin()
    """
)
KINDS = ("surrogate", "bytes", "tuple_keys", "cycle", "unprintable")
#: agent_started, agent_thinking, tool_executing, tool_completed, agent_completed
EVENTS_PER_RUN = 5


def _hostile_plugin() -> Any:
    module = types.ModuleType("hostile_agents")
    exec(HOSTILE_PLUGIN, module.__dict__)  # the test's own source, run in-process
    return module.plugin


@pytest.fixture
def hostile_srv() -> Iterator[RunningServer]:
    with running_server(plugins=[_hostile_plugin()], dev=True) as server:
        yield server


def _is_terminal(run_id: str) -> Any:
    def check(item: dict[str, Any]) -> bool:
        if item.get("run_id") != run_id:
            return False
        return item.get("type") == "agent_completed" or (
            item.get("type") == "error" and item.get("event_type") == "agent_completed"
        )

    return check


def _check_run_items(items: list[dict[str, Any]], run_id: str) -> None:
    """Each event of the run arrived once, in order, as itself or as an error item naming its
    cursor and seq; no item claims a cursor problem."""
    assert not [i for i in items if i.get("error") == "invalid_cursor"], items
    mine = [i for i in items if i.get("run_id") == run_id and "seq" in i]
    assert [i["seq"] for i in mine] == list(range(1, EVENTS_PER_RUN + 1)), mine
    for item in mine:
        assert item["cursor"], item
        if item["type"] == "error":
            assert item["error"] == "event_unencodable", item
            assert str(item["seq"]) in item["message"], item
            assert item["cursor"] in item["message"], item


class _LoopErrors:
    """Collects what the server's event loop reports through its exception handler (e.g.
    "Task exception was never retrieved")."""

    def __init__(self, srv: RunningServer) -> None:
        self.reported: list[str] = []
        self.srv = srv

        def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            self.reported.append(str(context.get("message")) + " " + repr(context.get("exception")))

        srv.loop.call_soon_threadsafe(srv.loop.set_exception_handler, handler)

    def check(self) -> None:
        # A task whose exception nobody retrieved reports it when it is collected.
        self.srv.call(asyncio.sleep(0.05))
        self.srv.loop.call_soon_threadsafe(gc.collect)
        self.srv.call(asyncio.sleep(0.05))
        assert self.reported == []


async def test_websocket_streams_go_on_past_hostile_events(
    hostile_srv: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    srv = hostile_srv
    loop_errors = _LoopErrors(srv)
    async with await ws_connect(srv, "alice") as ws, await ws_connect(srv, "alice") as other:
        run_ids = []
        for kind in KINDS:
            await ws.send(json.dumps({"type": "run", "agent": "hostile", "input": {"kind": kind}}))
            accepted = await recv_until(ws, lambda f: f.get("type") == "run_accepted")
            run_id = accepted[-1]["run_id"]
            items = [*accepted, *await recv_until(ws, _is_terminal(run_id))]
            _check_run_items(items, run_id)
            run_ids.append(run_id)
        await ws.send(json.dumps({"type": "run", "agent": "echo", "input": {"text": "still"}}))
        tail = await recv_until(ws, lambda f: f.get("type") == "agent_completed")
        assert tail[-1]["output"] == "still"
        # The user's other connection saw the same, and is still open.
        seen = await recv_until(other, lambda f: f.get("output") == "still")
        for run_id in run_ids:
            _check_run_items(seen, run_id)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    loop_errors.check()


async def test_sse_and_resumes_go_on_past_hostile_events(hostile_srv: RunningServer) -> None:
    srv = hostile_srv
    headers = srv.auth("alice")
    async with http(srv) as client:
        run_ids = []
        for kind in KINDS:
            r = await client.post(
                "/v1/runs", json={"agent": "hostile", "input": {"kind": kind}}, headers=headers
            )
            assert r.status_code == 202, r.text
            run_ids.append(r.json()["run_id"])
            await wait_run(client, run_ids[-1], headers)
        r = await client.post(
            "/v1/runs", json={"agent": "echo", "input": {"text": "still"}}, headers=headers
        )
        await wait_run(client, r.json()["run_id"], headers)

        async def replay(sse_headers: dict[str, str]) -> list[dict[str, Any]]:
            items = []
            async with (
                asyncio.timeout(30),
                client.stream("GET", "/v1/events", headers=sse_headers) as resp,
            ):
                assert resp.status_code == 200
                async for item in sse_items(resp):
                    assert item["data"].get("cursor") == item["id"], item
                    items.append(item["data"])
                    if item["data"].get("output") == "still":
                        return items
            raise AssertionError(items)

        # From the start, and resumed from the last good cursor before each hostile event.
        everything = await replay({**headers, "Last-Event-ID": "0"})
        for run_id in run_ids:
            _check_run_items(everything, run_id)
        for item in everything:
            if item.get("type") == "error":
                before = cursor_at(item["cursor"], cursor_number(item["cursor"]) - 1)
                resumed = await replay({**headers, "Last-Event-ID": before})
                assert resumed[0]["cursor"] == item["cursor"], resumed[0]
        # And over a WebSocket resuming from the start.
        async with await ws_connect(srv, "alice", after="0") as ws:
            frames = await recv_until(ws, lambda f: f.get("output") == "still")
        for run_id in run_ids:
            _check_run_items(frames, run_id)


async def test_run_records_of_hostile_outputs_stay_readable(hostile_srv: RunningServer) -> None:
    srv = hostile_srv
    loop_errors = _LoopErrors(srv)
    headers = srv.auth("alice")
    async with http(srv) as client:
        for kind in KINDS:
            r = await client.post(
                "/v1/runs", json={"agent": "hostile", "input": {"kind": kind}}, headers=headers
            )
            body = await wait_run(client, r.json()["run_id"], headers)
            assert body["status"] == "succeeded", (kind, body)
            assert body["output"] is not None, (kind, body)
            json.dumps(body["output"]).encode("utf-8")  # plain JSON, valid UTF-8
        listed = await client.get("/v1/runs", headers=headers)
        assert listed.status_code == 200, listed.text
        assert [r["status"] for r in listed.json()["runs"]] == ["succeeded"] * len(KINDS)
    loop_errors.check()


def test_agentengine_serve_survives_hostile_events(tmp_path: Path) -> None:
    """The same against a real ``agentengine serve`` process: its log stays clean."""
    plugins = {"hostileplug": HOSTILE_PLUGIN}
    with serve_process(tmp_path, "--dev", plugins=plugins) as (proc, port):
        token = dev_token(port, "alice")
        asyncio.run(_hostile_session(f"http://127.0.0.1:{port}", port, token))
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, output
    assert "Task exception was never retrieved" not in output, output
    assert "Traceback" not in output, output
    assert "Exception in ASGI application" not in output, output


async def _hostile_session(base: str, port: int, token: str) -> None:
    from websockets.asyncio.client import connect

    headers = {"Authorization": f"Bearer {token}"}
    ws = await connect(
        f"ws://127.0.0.1:{port}/v1/ws",
        subprotocols=["bearer", token],  # type: ignore[list-item]
        open_timeout=20,
    )
    async with ws, httpx.AsyncClient(base_url=base, timeout=30) as client:
        for kind in KINDS:
            await ws.send(json.dumps({"type": "run", "agent": "hostile", "input": {"kind": kind}}))
            accepted = await recv_until(ws, lambda f: f.get("type") == "run_accepted")
            run_id = accepted[-1]["run_id"]
            _check_run_items([*accepted, *await recv_until(ws, _is_terminal(run_id))], run_id)
            assert (await wait_run(client, run_id, headers))["output"] is not None
        await ws.send(json.dumps({"type": "run", "agent": "echo", "input": {"text": "still"}}))
        assert (await recv_until(ws, lambda f: f.get("type") == "agent_completed"))[-1][
            "output"
        ] == "still"
        listed = await client.get("/v1/runs", headers=headers)
        assert listed.status_code == 200, listed.text
    assert make_token  # the in-process tests sign their own tokens; this one asks the server
