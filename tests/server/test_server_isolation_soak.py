"""What must keep holding under load, on real servers with real sockets: many users' streams
over both transports stay apart and complete; SIGTERM with many runs in flight drains them all;
clients that stop reading are cut off without hurting a reading connection of the same user;
and a storm of good and bad resumes during a long run loses, repeats and leaks nothing.

``test_server_load.py`` covers 100 WebSocket clients of 20 users (runs over WebSocket only) and
one slow client at a time; ``test_server_serve.py`` a SIGTERM with one run in flight. These tests
go further: runs started over REST and WebSocket at once, both transports compared event for
event, a hundred runs drained by a real ``agentengine serve`` process.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import socket
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import pytest
from agentengine_server import ServerSettings
from invariants import cursor_number
from server_helpers import (
    SLOW_PLUGIN,
    RunningServer,
    check_runs_end_once,
    dev_token,
    eventually,
    http,
    make_token,
    recv_json,
    recv_until,
    running_server,
    serve_process,
    small_socket,
    sse_items,
    wait_run,
    ws_connect,
)
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus


def _events(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The run events among WebSocket frames (replies such as ``run_accepted`` left out)."""
    return [f for f in frames if "seq" in f]


def _retained(srv: RunningServer, user: str) -> list[dict[str, Any]]:
    """The user's events as the server's sink holds them, in wire form (the ground truth)."""

    async def snapshot() -> list[dict[str, Any]]:
        return [
            json.loads(json.dumps(e.to_wire())) for e in srv.state.factory.events.retained(user)
        ]

    result: list[dict[str, Any]] = srv.call(snapshot())
    return result


# -- 1. many users, both transports, runs started over both ----------------------------------

USERS = 50
RUNS_PER_USER = 20  # half over REST, half over the WebSocket


def _run_request(user: str, n: int) -> dict[str, Any]:
    """The n-th run of ``user``: a mix of the demo agents and a chatty one."""
    kind = n % 3
    if kind == 0:
        return {"agent": "echo", "input": {"text": f"{user} says {n}"}}
    if kind == 1:
        return {"agent": "researcher", "input": {"question": f"isolation {user} {n}"}}
    return {"agent": "chatty", "input": {"count": 4, "delay": 0.001}}


@pytest.mark.slow
async def test_50_users_x_20_runs_over_rest_and_websocket_streams_agree_and_stay_apart() -> None:
    with running_server(max_concurrent_per_user=RUNS_PER_USER) as srv:
        users = [f"soak-{n:02d}" for n in range(USERS)]
        sockets = {u: await ws_connect(srv, u, max_queue=None) for u in users}
        await eventually(lambda: srv.state.metrics.clients_connected["ws"] == USERS)
        accepted: dict[str, set[str]] = defaultdict(set)
        ws_frames: dict[str, list[dict[str, Any]]] = {u: [] for u in users}
        sse_got: dict[str, list[dict[str, Any]]] = {u: [] for u in users}

        async def read_sse(user: str, ready: asyncio.Event) -> None:
            async with (
                http(srv) as client,
                client.stream("GET", "/v1/events", headers=srv.auth(user)) as resp,
            ):
                assert resp.status_code == 200
                ready.set()
                done = 0
                async with asyncio.timeout(120):
                    async for item in sse_items(resp):
                        sse_got[user].append(item)
                        done += item["data"]["type"] == "agent_completed"
                        if done == RUNS_PER_USER:
                            return

        async def read_ws(user: str) -> None:
            ws, frames = sockets[user], ws_frames[user]
            done = replies = 0
            async with asyncio.timeout(120):
                while done < RUNS_PER_USER or replies < RUNS_PER_USER // 2:
                    frame = json.loads(await ws.recv())
                    assert frame["type"] != "error", frame
                    frames.append(frame)
                    if frame["type"] == "run_accepted":
                        replies += 1
                        accepted[user].add(frame["run_id"])
                    done += frame["type"] == "agent_completed"

        async def start_runs(user: str, client: httpx.AsyncClient) -> None:
            headers = srv.auth(user)
            for n in range(RUNS_PER_USER):
                request = _run_request(user, n)
                if n % 2:  # odd runs over the WebSocket, even ones over REST, interleaved
                    await sockets[user].send(json.dumps({"type": "run", **request, "id": n}))
                    continue
                r = await client.post("/v1/runs", json=request, headers=headers)
                assert r.status_code == 202, r.text
                accepted[user].add(r.json()["run_id"])

        readies = [asyncio.Event() for _ in users]
        sse_tasks = [
            asyncio.create_task(read_sse(u, r)) for u, r in zip(users, readies, strict=True)
        ]
        for ready in readies:
            await ready.wait()
        limits = httpx.Limits(max_connections=20)
        async with httpx.AsyncClient(base_url=srv.base_url, timeout=60, limits=limits) as client:
            await asyncio.gather(
                *(read_ws(u) for u in users),
                *(start_runs(u, client) for u in users),
                *sse_tasks,
            )
            statuses = {}
            for user in users:
                r = await client.get("/v1/runs", headers=srv.auth(user))
                assert r.status_code == 200
                statuses[user] = {run["run_id"]: run["status"] for run in r.json()["runs"]}
        truth = {u: _retained(srv, u) for u in users}
        for ws in sockets.values():
            await ws.close()

    all_runs: set[str] = set()
    for user in users:
        ws_events = _events(ws_frames[user])
        sse_events = [item["data"] for item in sse_got[user]]
        # No event of anyone else, on either transport.
        assert {e["user_id"] for e in ws_events + sse_events} == {user}
        # Both transports carry the same events in the same order, exactly what the sink
        # recorded for the user (nothing lost, nothing doubled, nothing reordered)...
        assert ws_events == sse_events, user
        assert ws_events == truth[user], user
        assert [item["id"] for item in sse_got[user]] == [e["cursor"] for e in sse_events]
        # ...with contiguous seq and one terminal event per run, for exactly the user's runs.
        runs = check_runs_end_once(ws_events)
        assert set(runs) == accepted[user]
        assert len(runs) == RUNS_PER_USER
        assert all(evs[-1]["status"] == "succeeded" for evs in runs.values())
        assert statuses[user] == dict.fromkeys(runs, "succeeded")
        assert not all_runs & set(runs)
        all_runs |= set(runs)
    assert len(all_runs) == USERS * RUNS_PER_USER


# -- 2. SIGTERM with a hundred runs in flight --------------------------------------------------

DRAIN_USERS = 10
DRAIN_RUNS = 10  # per user: half over REST, half over the WebSocket


def _refused(port: int) -> bool:
    """True when a new TCP connection to the port is refused."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.mark.slow
def test_sigterm_with_100_runs_in_flight_drains_every_run_on_both_transports(
    tmp_path: Path,
) -> None:
    env = {
        "AGENTENGINE_ENGINE__DRAIN_TIMEOUT": "30",
        "AGENTENGINE_ENGINE__MAX_CONCURRENT_PER_USER": str(DRAIN_RUNS),
        "AGENTENGINE_ENGINE__MAX_ENGINES_PER_USER": str(DRAIN_RUNS),
    }
    with serve_process(tmp_path, "--dev", plugins={"slowplug": SLOW_PLUGIN}, env=env) as (
        proc,
        port,
    ):
        tokens = {f"drain-{n}": dev_token(port, f"drain-{n}") for n in range(DRAIN_USERS)}
        result = asyncio.run(_sigterm_with_runs_in_flight(proc, port, tokens))
        output = proc.communicate(timeout=90)[0]
        assert proc.returncode == 0, output
    assert "shutting down: draining runs" in output
    assert "shutdown complete" in output
    ws_frames, closes, sse_got, accepted, refusals = result
    assert refusals == {
        "tcp": True,
        "ws": True,
        "healthz": 503,
        "runs": (503, "shutting_down"),
        "events": 503,
    }
    all_runs: set[str] = set()
    for user in tokens:
        # Every WebSocket got a close frame saying the server is going away.
        assert closes[user] is not None, user
        assert closes[user].code == 1001, closes[user]
        ws_events = _events(ws_frames[user])
        sse_events = [item["data"] for item in sse_got[user]]
        assert ws_events == sse_events, user
        assert {e["user_id"] for e in ws_events} == {user}
        runs = check_runs_end_once(ws_events)
        assert set(runs) == accepted[user]
        assert len(runs) == DRAIN_RUNS
        # Drained, not cancelled: every run finished within the drain deadline.
        assert {evs[-1]["status"] for evs in runs.values()} == {"succeeded"}
        assert {evs[-1]["output"] for evs in runs.values()} == {"finished"}
        all_runs |= set(runs)
    assert len(all_runs) == DRAIN_USERS * DRAIN_RUNS


async def _sigterm_with_runs_in_flight(
    proc: Any, port: int, tokens: dict[str, str]
) -> tuple[Any, ...]:
    base = f"http://127.0.0.1:{port}"
    sockets: dict[str, ClientConnection] = {}
    for user, token in tokens.items():
        sockets[user] = await connect(
            f"ws://127.0.0.1:{port}/v1/ws",
            subprotocols=["bearer", token],  # type: ignore[list-item]
            open_timeout=30,
            max_queue=None,
        )
    ws_frames: dict[str, list[dict[str, Any]]] = {u: [] for u in tokens}
    sse_got: dict[str, list[dict[str, Any]]] = {u: [] for u in tokens}
    closes: dict[str, Any] = {}
    accepted: dict[str, set[str]] = defaultdict(set)
    working: dict[str, int] = dict.fromkeys(tokens, 0)

    async def read_sse(user: str, ready: asyncio.Event) -> None:
        headers = {"Authorization": f"Bearer {tokens[user]}"}
        async with (
            httpx.AsyncClient(base_url=base, timeout=90) as client,
            client.stream("GET", "/v1/events", headers=headers) as resp,
        ):
            assert resp.status_code == 200
            ready.set()
            async with asyncio.timeout(90):
                sse_got[user].extend([item async for item in sse_items(resp)])

    async def read_ws(user: str) -> None:
        try:
            async with asyncio.timeout(90):
                while True:
                    frame = json.loads(await sockets[user].recv())
                    assert frame["type"] != "error", frame
                    ws_frames[user].append(frame)
                    if frame["type"] == "run_accepted":
                        accepted[user].add(frame["run_id"])
                    elif frame["type"] == "agent_thinking":
                        working[user] += 1
        except ConnectionClosed as exc:
            closes[user] = exc.rcvd

    readies = [asyncio.Event() for _ in tokens]
    sse_tasks = [asyncio.create_task(read_sse(u, r)) for u, r in zip(tokens, readies, strict=True)]
    ws_tasks = [asyncio.create_task(read_ws(u)) for u in tokens]
    for ready in readies:
        await ready.wait()

    run = {"agent": "slowpoke", "input": {"seconds": 3.0}}
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        for user, token in tokens.items():
            headers = {"Authorization": f"Bearer {token}"}
            for n in range(DRAIN_RUNS):
                if n % 2:
                    await sockets[user].send(json.dumps({"type": "run", **run, "id": n}))
                else:
                    r = await client.post("/v1/runs", json=run, headers=headers)
                    assert r.status_code == 202, r.text
                    accepted[user].add(r.json()["run_id"])
        await eventually(
            lambda: all(n == DRAIN_RUNS for n in working.values()), 60, "every run to start"
        )

    # A kept-alive connection opened before the signal sees the shutdown from inside.
    headers = {"Authorization": f"Bearer {next(iter(tokens.values()))}"}
    async with httpx.AsyncClient(base_url=base, timeout=30) as inside:
        assert (await inside.get("/healthz")).status_code == 200
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            while (health := (await inside.get("/healthz")).status_code) == 200:  # noqa: ASYNC110 - another process's state
                await asyncio.sleep(0.02)
        # Draining: no new connection is accepted, and the old one takes no new work.
        refusals: dict[str, Any] = {"tcp": _refused(port), "healthz": health}
        try:
            await connect(
                f"ws://127.0.0.1:{port}/v1/ws",
                subprotocols=["bearer", tokens[next(iter(tokens))]],  # type: ignore[list-item]
                open_timeout=10,
            )
            refusals["ws"] = False
        except (OSError, InvalidStatus):
            refusals["ws"] = True
        r = await inside.post("/v1/runs", json=run, headers=headers)
        refusals["runs"] = (r.status_code, r.json()["error"])
        refusals["events"] = (await inside.get("/v1/events", headers=headers)).status_code
    await asyncio.gather(*ws_tasks, *sse_tasks)
    return ws_frames, closes, sse_got, accepted, refusals


# -- 3. clients that stop reading -------------------------------------------------------------


async def _read_ws_to_close(ws: ClientConnection) -> tuple[list[dict[str, Any]], Any]:
    frames: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(60):
            while True:
                frames.append(json.loads(await ws.recv()))
    except ConnectionClosed as exc:
        return frames, exc.rcvd


def _pump_tasks(srv: RunningServer, user: str) -> int:
    """Catch-up readers of ``user``'s stream still running in the server (a pump whose client
    stopped reading has one until it gives up on that client)."""

    async def count() -> int:
        name = f"agentengine-server-pump-{user}"
        return sum(t.get_name() == name and not t.done() for t in asyncio.all_tasks())

    result: int = srv.call(count())
    return result


@pytest.mark.slow
async def test_stalled_websocket_and_sse_are_cut_off_while_a_reader_of_that_user_gets_all() -> None:
    settings = ServerSettings(send_buffer=32, slow_client_timeout=0.3)
    count = 2000  # x 4 KB: far more than the socket buffers of a client that stops reading
    with running_server(settings=settings) as srv:
        headers = srv.auth("alice")
        stalled_ws = await connect(
            srv.ws_url,
            sock=small_socket(srv.port),
            subprotocols=["bearer", make_token("alice")],  # type: ignore[list-item]
            max_queue=1,
            compression=None,
            open_timeout=20,
        )
        reader_ws = await ws_connect(srv, "alice", max_queue=None)
        async with (
            http(srv) as stalled_client,
            stalled_client.stream("GET", "/v1/events", headers=headers) as stalled_sse,
            http(srv) as reader_client,
            reader_client.stream("GET", "/v1/events", headers=headers) as reader_sse,
            http(srv) as client,
        ):
            await eventually(lambda: srv.state.metrics.clients_connected["sse"] == 2)
            sse_got: list[dict[str, Any]] = []

            async def read_sse() -> None:
                async with asyncio.timeout(60):
                    async for item in sse_items(reader_sse):
                        sse_got.append(item)
                        if item["data"]["type"] == "agent_completed":
                            return

            sse_task = asyncio.create_task(read_sse())
            r = await client.post(
                "/v1/runs",
                json={"agent": "chatty", "input": {"count": count, "size": 4000}},
                headers=headers,
            )
            run_id = r.json()["run_id"]
            ws_got = await recv_until(reader_ws, lambda f: f.get("type") == "agent_completed", 60)
            await sse_task
            assert (await wait_run(client, run_id, headers))["status"] == "succeeded"
            # The stalled WebSocket was given up on (it is closed once its socket drains), and
            # the stalled stream's own reader stopped: nothing of theirs is buffered any more.
            await eventually(lambda: srv.state.metrics.slow_client_closes >= 1, what="ws cut")
            await eventually(lambda: _pump_tasks(srv, "alice") == 0, what="sse cut")

            # Now the stalled clients read: what reached them, then the end of their stream.
            stalled_frames, close = await _read_ws_to_close(stalled_ws)
            async with asyncio.timeout(60):
                stalled_items = [item async for item in sse_items(stalled_sse)]
        assert srv.state.metrics.slow_client_closes == 2

        # They resume from the last cursor they got, losing and repeating nothing.
        ws_rest_socket = await ws_connect(
            srv, "alice", after=stalled_frames[-1]["cursor"], max_queue=None
        )
        ws_rest = await recv_until(ws_rest_socket, lambda f: f.get("type") == "agent_completed")
        await ws_rest_socket.close()
        resumed = {**headers, "Last-Event-ID": stalled_items[-1]["id"]}
        sse_rest: list[dict[str, Any]] = []
        async with http(srv) as client, client.stream("GET", "/v1/events", headers=resumed) as r:
            async with asyncio.timeout(60):
                async for item in sse_items(r):
                    sse_rest.append(item)
                    if item["data"]["type"] == "agent_completed":
                        break
        await reader_ws.close()

    # The reading connections of the same user got every event, in order, exactly once.
    assert len(ws_got) == count + 2
    check_runs_end_once(ws_got)
    assert [item["data"] for item in sse_got] == ws_got
    # The stalled ones were cut off part-way: closed with 1013 naming the cursor to resume
    # after, and the event stream simply ended.
    assert close is not None
    assert close.code == 1013, close
    assert f"resume after cursor {stalled_frames[-1]['cursor']}" in close.reason
    assert 0 < len(stalled_frames) < count + 2
    assert 0 < len(stalled_items) < count + 2
    assert stalled_frames + ws_rest == ws_got
    assert [item["data"] for item in stalled_items + sse_rest] == ws_got


# -- 4. a storm of good and bad resumes during a long run ----------------------------------------

RETENTION = 1000  # events per user: the storm's stale cursors are older than that
BOB_EVENTS = 20_000 + 2  # bob's newest cursor: far ahead of anything alice's run reaches
STORM_WORKERS = 4
GOOD_READ = 10  # events read after each good resume
TRANSPORTS = ("ws-frame", "ws-connect", "sse-header", "sse-query")
KINDS = ("valid", "stale", "forged", "negative", "other-user", "malformed", "wrong-type")
# The last one is over int()'s digit limit; "1-2-3" and "ABCDEF01-1" look almost like cursors.
MALFORMED = ("abc", "1.5", "0x10", "9" * 5000, "1-2-3", "ABCDEF01-1")


class _Checked:
    """One resumed stream's items, checked to be contiguous after ``after``."""

    def __init__(self, after: int) -> None:
        self.after = after
        self.last = after
        self.items: list[dict[str, Any]] = []

    def add(self, item: dict[str, Any]) -> None:
        assert item["user_id"] == "alice", item
        number = cursor_number(item["cursor"])
        if item["type"] == "events_lost":
            # Only what retention dropped is skipped, and the gap says exactly what.
            after = cursor_number(item["after"]) if item["after"] is not None else 0
            assert after == self.last, item
            assert number == self.last + item["missed"], item
            assert item["missed"] > 0, item
        else:
            assert number == self.last + 1, (self.last, item)
        self.last = number
        self.items.append(item)

    @property
    def events(self) -> int:
        return sum(i["type"] != "events_lost" for i in self.items)


def _bad_cursor(kind: str, n: int, epoch: str) -> str:
    return {
        "forged": f"{epoch}-99999999",
        "negative": f"{epoch}--5" if n % 2 else "-5",
        "other-user": f"{epoch}-{BOB_EVENTS}",
        "malformed": MALFORMED[n % len(MALFORMED)],
    }[kind]


_EXPECTED_MESSAGE = {
    "forged": "ahead of user 'alice'",
    "negative": "invalid cursor",
    "other-user": "ahead of user 'alice'",
    "malformed": "invalid cursor",
}


def _storm_plan() -> list[list[tuple[str, str]]]:
    """Every (transport, kind) pair twice, shuffled with a fixed seed, dealt to the workers.
    A cursor of the wrong JSON type can only be sent in a resume frame."""
    pairs = [(t, k) for t in TRANSPORTS for k in KINDS if k != "wrong-type" or t == "ws-frame"]
    pairs *= 2
    random.Random(10).shuffle(pairs)
    return [pairs[w::STORM_WORKERS] for w in range(STORM_WORKERS)]


@pytest.mark.slow
async def test_resume_storm_with_good_and_bad_cursors_loses_repeats_and_leaks_nothing() -> None:
    with running_server(event_retention=RETENTION) as srv:
        headers = srv.auth("alice")
        async with http(srv) as client:
            # Bob's stream runs far ahead of alice's: his cursors are out of her range.
            bob = srv.auth("bob")
            r = await client.post(
                "/v1/runs",
                json={"agent": "chatty", "input": {"count": BOB_EVENTS - 2}},
                headers=bob,
            )
            assert (await wait_run(client, r.json()["run_id"], bob, 60))["status"] == "succeeded"
            epoch = srv.state.factory.events.epoch  # the sink's: alice's and bob's cursors
            async with await ws_connect(srv, "bob", after=f"{epoch}-{BOB_EVENTS - 1}") as ws:
                # a real bob cursor
                assert (await recv_json(ws))["cursor"] == f"{epoch}-{BOB_EVENTS}"

            # The reading connections: open before alice's long run starts.
            reader = await ws_connect(srv, "alice", max_queue=None)
            reader_got = _Checked(0)
            sse_got = _Checked(0)
            run_done = asyncio.Event()

            async def read_ws() -> None:
                async with asyncio.timeout(120):
                    while True:
                        reader_got.add(json.loads(await reader.recv()))
                        if reader_got.items[-1]["type"] == "agent_completed":
                            run_done.set()
                            return

            async def read_sse() -> None:
                async with (
                    http(srv) as sse_client,
                    sse_client.stream("GET", "/v1/events", headers=headers) as resp,
                ):
                    async with asyncio.timeout(120):
                        async for item in sse_items(resp):
                            assert item["id"] == item["data"]["cursor"]
                            sse_got.add(item["data"])
                            if item["data"]["type"] == "agent_completed":
                                return

            sse_task = asyncio.create_task(read_sse())
            await eventually(lambda: srv.state.metrics.clients_connected["sse"] == 1)
            readers = [asyncio.create_task(read_ws()), sse_task]
            count = 100_000  # cancelled once the storm is over
            r = await client.post(
                "/v1/runs",
                json={"agent": "chatty", "input": {"count": count, "delay": 0.001}},
                headers=headers,
            )
            run_id = r.json()["run_id"]
            # Enough events that the oldest ones were dropped: stale cursors exist.
            await eventually(lambda: reader_got.last > RETENTION + 100, 60, "events to pile up")

            def cursor_for(kind: str, n: int) -> str:
                latest = reader_got.last
                if kind == "valid":  # recent: well within retention
                    return f"{epoch}-{latest - n % 50}"
                if kind == "stale":  # older than anything retained now
                    return f"{epoch}-{latest - RETENTION - 20 - n % 50}"
                if kind == "wrong-type":  # sent as a JSON list instead
                    return ""
                return _bad_cursor(kind, n, epoch)

            outcomes: list[tuple[str, str, _Checked | None]] = []
            plans = _storm_plan()
            await asyncio.gather(
                *(_storm_worker(srv, w, plan, cursor_for, outcomes) for w, plan in enumerate(plans))
            )
            assert not run_done.is_set(), "the long run ended before the storm did"
            r = await client.post(f"/v1/runs/{run_id}/cancel", headers=headers)
            assert r.status_code == 200, r.text
            assert r.json()["status"] == "cancelled"
            await asyncio.gather(*readers)
            await reader.close()

    # Every planned resume happened.
    assert len(outcomes) == sum(len(p) for p in plans)
    # The reading connections were unaffected: the whole run, in order, one terminal event.
    assert reader_got.events == len(reader_got.items)  # no gap
    assert sse_got.items == reader_got.items
    runs = check_runs_end_once(reader_got.items)
    assert list(runs) == [run_id]
    assert reader_got.items[-1]["status"] == "cancelled"
    by_cursor = {e["cursor"]: e for e in reader_got.items}
    stale_gaps = 0
    for transport, kind, got in outcomes:
        if got is None:
            continue
        # A good resume delivers exactly the run's events after its cursor (checked to be
        # contiguous as they came), the same the reader got.
        for item in got.items:
            if item["type"] == "events_lost":
                continue
            assert item == by_cursor[item["cursor"]], (transport, kind)
        assert got.events >= GOOD_READ, (transport, kind)
        if kind == "stale":
            assert got.items[0]["type"] == "events_lost", (transport, got.items[0])
            stale_gaps += 1
        else:
            assert all(i["type"] != "events_lost" for i in got.items), (transport, kind)
    assert stale_gaps == 2 * len(TRANSPORTS)


async def _storm_worker(
    srv: RunningServer,
    worker: int,
    plan: list[tuple[str, str]],
    cursor_for: Any,
    outcomes: list[tuple[str, str, _Checked | None]],
) -> None:
    """Resume with each planned (transport, kind); check what each answers."""
    headers = srv.auth("alice")
    # The worker's own long-lived connection, for resume frames.
    ws = await ws_connect(srv, "alice", max_queue=None)
    live: _Checked | None = None  # its stream so far (checked to stay contiguous)

    async def next_ws_item() -> dict[str, Any]:
        nonlocal live
        frame = await recv_json(ws)
        if "cursor" in frame:
            if live is None:
                live = _Checked(cursor_number(frame["cursor"]) - 1)
            live.add(frame)
        return frame

    async with http(srv) as client:
        for n, (transport, kind) in enumerate(plan):
            good = kind in ("valid", "stale")
            cursor = cursor_for(kind, n * STORM_WORKERS + worker)
            checked = _Checked(cursor_number(cursor)) if good else None
            if transport == "ws-frame":
                ref = f"w{worker}-{n}"
                after: Any = [1] if kind == "wrong-type" else cursor
                await ws.send(json.dumps({"type": "resume", "after": after, "id": ref}))
                if kind == "wrong-type":
                    # Refused outright; the stream goes on, contiguous (checked as it comes).
                    while (frame := await next_ws_item()).get("id") != ref:
                        pass
                    assert frame["type"] == "error", frame
                    assert frame["error"] == "invalid_frame", frame
                    assert "'after' must be a cursor string" in frame["message"]
                    for _ in range(GOOD_READ):
                        assert "cursor" in await next_ws_item()
                    outcomes.append((transport, kind, None))
                    continue
                while (frame := await next_ws_item()).get("id") != ref:
                    pass  # the stream before the resume, still contiguous
                assert frame == {"type": "resumed", "after": cursor, "id": ref}, frame
                before = live
                if good:
                    assert checked is not None
                    live = checked
                    while checked.events < GOOD_READ:
                        await next_ws_item()
                else:
                    error = await recv_json(ws)
                    assert error["type"] == "error", error
                    assert error["error"] == "invalid_cursor", error
                    assert _EXPECTED_MESSAGE[kind] in error["message"], error
                    # The stream carries on where it was: nothing lost, nothing repeated.
                    assert before is not None
                    for _ in range(GOOD_READ):
                        assert "cursor" in await next_ws_item()
                    assert live is before
            elif transport == "ws-connect":
                async with await ws_connect(srv, "alice", after=cursor, max_queue=None) as other:
                    if good:
                        assert checked is not None
                        while checked.events < GOOD_READ:
                            checked.add(await recv_json(other))
                    else:
                        error = await recv_json(other)
                        assert error["type"] == "error", error
                        assert error["error"] == "invalid_cursor", error
                        assert _EXPECTED_MESSAGE[kind] in error["message"], error
                        with pytest.raises(ConnectionClosed) as closed:
                            await recv_json(other)
                        assert closed.value.rcvd is not None
                        assert closed.value.rcvd.code == 1008
            else:
                if transport == "sse-header":
                    request: dict[str, Any] = {"headers": {**headers, "Last-Event-ID": cursor}}
                else:
                    request = {"headers": headers, "params": {"after": cursor}}
                async with client.stream("GET", "/v1/events", **request) as resp:
                    assert resp.status_code == 200
                    async with asyncio.timeout(30):
                        if good:
                            assert checked is not None
                            async for item in sse_items(resp):
                                assert item["id"] == item["data"]["cursor"]
                                checked.add(item["data"])
                                if checked.events >= GOOD_READ:
                                    break
                        else:
                            items = [item async for item in sse_items(resp)]
                            assert len(items) == 1, items
                            assert items[0]["event"] == "error"
                            assert items[0]["data"]["error"] == "invalid_cursor"
                            assert _EXPECTED_MESSAGE[kind] in items[0]["data"]["message"]
            outcomes.append((transport, kind, checked))
    await ws.close()
