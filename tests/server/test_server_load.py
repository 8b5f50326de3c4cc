"""Isolation and slow clients under load: real server, real sockets, 100 concurrent clients."""

from __future__ import annotations

import asyncio
import json
import socket
from collections import defaultdict
from typing import Any

import pytest
from agentengine_server import ServerSettings
from invariants import cursor_number
from server_helpers import (
    check_run_sequences,
    eventually,
    http,
    make_token,
    recv_until,
    running_server,
    sse_items,
    wait_run,
    ws_connect,
)
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

USERS = 20
CONNECTIONS_PER_USER = 5
RUNS_PER_CONNECTION = 2


async def test_100_clients_of_20_users_each_get_only_their_users_events_in_order() -> None:
    with running_server(max_concurrent_per_user=16) as srv:
        users = [f"user-{n:02d}" for n in range(USERS)]
        clients: list[tuple[str, ClientConnection]] = []
        for user in users:
            clients.extend(
                [
                    (user, await ws_connect(srv, user, max_queue=None))
                    for _ in range(CONNECTIONS_PER_USER)
                ]
            )
        total = USERS * CONNECTIONS_PER_USER
        await eventually(lambda: srv.state.metrics.clients_connected["ws"] == total)
        # One shared subscription per user feeds that user's connections.
        assert len(srv.state.streams._fanouts) == USERS

        accepted: dict[str, set[str]] = defaultdict(set)
        received: list[list[dict[str, Any]]] = [[] for _ in clients]
        expected_done = asyncio.Event()

        async def client_task(i: int, user: str, ws: ClientConnection) -> None:
            for r in range(RUNS_PER_CONNECTION):
                frame = (
                    {"type": "run", "agent": "researcher", "input": {"question": f"{user} {r}"}}
                    if r % 2 == 0
                    else {"type": "run", "agent": "chatty", "input": {"count": 8, "delay": 0.002}}
                )
                await ws.send(json.dumps({**frame, "id": r}))
            want = RUNS_PER_CONNECTION * CONNECTIONS_PER_USER
            completed: set[str] = set()
            async with asyncio.timeout(90):
                while len(completed) < want:
                    data = json.loads(await ws.recv())
                    if data["type"] == "run_accepted":
                        accepted[user].add(data["run_id"])
                        continue
                    assert data["type"] != "error", data
                    received[i].append(data)
                    if data["type"] == "agent_completed":
                        completed.add(data["run_id"])

        sse_received: dict[str, list[dict[str, Any]]] = {}

        async def sse_task(user: str, ready: asyncio.Event) -> None:
            got = sse_received[user] = []
            want = RUNS_PER_CONNECTION * CONNECTIONS_PER_USER
            headers = srv.auth(user)
            async with (
                http(srv) as client,
                client.stream("GET", "/v1/events", headers=headers) as r,
            ):
                ready.set()
                async with asyncio.timeout(90):
                    async for item in sse_items(r):
                        got.append(item["data"])
                        if sum(e["type"] == "agent_completed" for e in got) == want:
                            return

        # One SSE stream per user besides the WebSockets.
        readies = [asyncio.Event() for _ in users]
        sse_tasks = [
            asyncio.create_task(sse_task(u, ready)) for u, ready in zip(users, readies, strict=True)
        ]
        for ready in readies:
            await ready.wait()
        await asyncio.gather(*(client_task(i, u, ws) for i, (u, ws) in enumerate(clients)))
        await asyncio.gather(*sse_tasks)
        expected_done.set()
        for _, ws in clients:
            await ws.close()

    all_runs: set[str] = set()
    for (user, _), events in zip(clients, received, strict=True):
        # Only this user's events...
        assert {e["user_id"] for e in events} == {user}
        # ...in the order the sink recorded them (cursors strictly increasing)...
        cursors = [cursor_number(e["cursor"]) for e in events]
        assert cursors == sorted(set(cursors))
        # ...every run complete with contiguous seq, and exactly the user's runs.
        runs = check_run_sequences(events)
        assert set(runs) == accepted[user]
        for run_events in runs.values():
            assert run_events[-1]["status"] == "succeeded"
        all_runs |= set(runs)
    assert len(all_runs) == USERS * CONNECTIONS_PER_USER * RUNS_PER_CONNECTION
    for user, events in sse_received.items():
        assert {e["user_id"] for e in events} == {user}
        assert set(check_run_sequences(events)) == accepted[user]


async def _read_all(ws: ClientConnection, into: list[dict[str, Any]]) -> None:
    async with asyncio.timeout(30):
        while True:
            into.append(json.loads(await ws.recv()))


def _small_socket(port: int) -> socket.socket:
    """A client socket with a tiny receive buffer, so the server's sends back up quickly."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


async def test_slow_client_overflows_is_closed_1013_and_resumes_losing_nothing() -> None:
    settings = ServerSettings(send_buffer=32, slow_client_timeout=0.3)
    count = 2000  # x 4 KB: more than loopback socket buffers (up to 4 MB) can hold
    with running_server(settings=settings) as srv:
        url = f"{srv.ws_url}"
        slow = await connect(
            url,
            sock=_small_socket(srv.port),
            subprotocols=["bearer", make_token("alice")],  # type: ignore[list-item]
            max_queue=1,
            compression=None,
            open_timeout=20,
        )
        fast = await ws_connect(srv, "alice", max_queue=None)
        other = await ws_connect(srv, "bob")
        headers = srv.auth("alice")
        async with http(srv) as client:
            r = await client.post(
                "/v1/runs",
                json={"agent": "chatty", "input": {"count": count, "size": 4000}},
                headers=headers,
            )
            run_id = r.json()["run_id"]
            # The fast client of the same user gets everything while the slow one reads nothing.
            fast_frames = await recv_until(fast, lambda f: f.get("type") == "agent_completed", 60)
            assert len(fast_frames) == count + 2
            assert (await wait_run(client, run_id, headers))["status"] == "succeeded"
            # Another user is unaffected too.
            await other.send(json.dumps({"type": "run", "agent": "echo", "input": {"text": "b"}}))
            await recv_until(other, lambda f: f.get("type") == "agent_completed")

        await eventually(lambda: srv.state.metrics.slow_client_closes >= 1, what="overflow")

        # Now the slow client reads what reached it, then the close frame: 1013.
        got: list[dict[str, Any]] = []
        with pytest.raises(ConnectionClosed) as closed:
            await _read_all(slow, got)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1013, closed.value
        assert "resume after cursor" in closed.value.rcvd.reason
        assert 0 < len(got) < count + 2
        last = got[-1]["cursor"]
        # Resume by cursor: the rest arrives, nothing lost, nothing doubled.
        async with await ws_connect(srv, "alice", after=last, max_queue=None) as again:
            rest = await recv_until(again, lambda f: f.get("type") == "agent_completed", 60)
        for ws in (fast, other):
            await ws.close()
    events = got + rest
    check_run_sequences(events)
    assert len(events) == count + 2
    assert events == [f for f in fast_frames if "seq" in f]
