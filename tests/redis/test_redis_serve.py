"""Several real ``agentengine serve`` processes on one real redis-server: runs started on one
instance stream to every instance's clients, resume works across restarts, and Redis going
away (``kill -9``) loses nothing that was acknowledged."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis_server import RedisProcess, unique_prefix
from server_helpers import (
    AGENTENGINE,
    CHATTER,
    SECRET,
    check_runs_end_once,
    make_token,
    serve_env,
    serve_process,
    sse_items,
)
from websockets.asyncio.client import connect

EVENT_TYPES = {
    "agent_started",
    "agent_thinking",
    "tool_executing",
    "tool_completed",
    "agent_error",
    "agent_completed",
    "events_lost",
}


def redis_env(url: str, prefix: str, **extra: str) -> dict[str, str]:
    return {
        "AGENTENGINE_REDIS__URL": url,
        "AGENTENGINE_REDIS__KEY_PREFIX": prefix,
        "AGENTENGINE_REDIS__HEALTH_INTERVAL": "0.2",
        "AGENTENGINE_JWT_SECRET": SECRET,
        **extra,
    }


@contextmanager
def instance(
    tmp_path: Path, name: str, url: str, prefix: str
) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """``agentengine serve`` with the chatter agent on Redis ``url`` (keys under ``prefix``)."""
    path = tmp_path / name
    path.mkdir(exist_ok=True)
    with serve_process(path, plugins={"chatplug": CHATTER}, env=redis_env(url, prefix)) as served:
        yield served


def auth(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(user)}"}


async def start_run(port: int, user: str, **inputs: Any) -> str:
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.post(
            f"http://127.0.0.1:{port}/v1/runs",
            json={"agent": "chatter", "input": inputs},
            headers=auth(user),
        )
    assert r.status_code == 202, r.text
    return str(r.json()["run_id"])


async def run_status(port: int, user: str, run_id: str) -> str:
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.get(f"http://127.0.0.1:{port}/v1/runs/{run_id}", headers=auth(user))
    assert r.status_code == 200, r.text
    return str(r.json()["status"])


Done = Callable[[list[dict[str, Any]]], bool]


def ended(run_ids: set[str]) -> Done:
    """Done once every run of ``run_ids`` delivered its terminal event."""
    return lambda events: run_ids <= {e["run_id"] for e in events if e["type"] == "agent_completed"}


async def until_done(
    source: AsyncIterator[dict[str, Any]], done: Done, timeout: float
) -> list[dict[str, Any]]:
    """Items of ``source`` until ``done(items)``, checked as items arrive and every 0.2 s (what
    ``done`` depends on may change meanwhile), or until ``source`` ends."""
    items: list[dict[str, Any]] = []
    pending: asyncio.Future[dict[str, Any]] | None = None
    try:
        async with asyncio.timeout(timeout):
            while not done(items):
                if pending is None:
                    pending = asyncio.ensure_future(anext(source))
                finished, _ = await asyncio.wait({pending}, timeout=0.2)
                if finished:
                    try:
                        items.append(pending.result())
                    except StopAsyncIteration:
                        break
                    pending = None
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
        await source.aclose()  # type: ignore[attr-defined]
    return items


async def ws_items(port: int, user: str, after: str) -> AsyncIterator[dict[str, Any]]:
    async with connect(
        f"ws://127.0.0.1:{port}/v1/ws" + (f"?after={after}" if after else ""),
        subprotocols=["bearer", make_token(user)],  # type: ignore[list-item]
        open_timeout=20,
    ) as ws:
        while True:
            frame = json.loads(await ws.recv())
            assert frame.get("type") != "error", frame
            if frame.get("type") in EVENT_TYPES:
                yield frame


async def ws_events(
    port: int, user: str, done: Done, *, after: str = "0", timeout: float = 60
) -> list[dict[str, Any]]:
    """Every event item a WebSocket client of ``user`` receives, until ``done(items)``."""
    return await until_done(ws_items(port, user, after), done, timeout)


async def sse_items_of(
    port: int, user: str, last_event_id: str | None, after: str
) -> AsyncIterator[dict[str, Any]]:
    headers = auth(user)
    url = f"http://127.0.0.1:{port}/v1/events"
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    else:
        url += f"?after={after}"
    try:
        async with (
            httpx.AsyncClient(timeout=120) as client,
            client.stream("GET", url, headers=headers) as resp,
        ):
            assert resp.status_code == 200
            async for item in sse_items(resp):
                assert item.get("event") != "error", item
                yield {**item["data"], "_id": item.get("id")}
    except httpx.RemoteProtocolError:
        return  # the server went away mid-stream (SIGTERM): the stream ends here


async def sse_events(
    port: int,
    user: str,
    done: Done,
    *,
    last_event_id: str | None = None,
    after: str = "0",
    timeout: float = 60,
) -> list[dict[str, Any]]:
    """Every event item (its SSE ``id`` as ``_id``) an SSE client of ``user`` receives, until
    ``done(items)`` or the end of the stream."""
    return await until_done(sse_items_of(port, user, last_event_id, after), done, timeout)


def check_user(items: list[dict[str, Any]], user: str, run_ids: set[str]) -> None:
    """Only ``user``'s events, each once, every run complete and in order, nothing lost."""
    assert all(e["user_id"] == user for e in items), {e["user_id"] for e in items}
    assert not [e for e in items if e["type"] == "events_lost"]
    runs = check_runs_end_once(items)
    assert set(runs) == run_ids


def test_a_run_started_on_one_instance_reaches_clients_on_another(
    tmp_path: Path, redis_process: RedisProcess
) -> None:
    prefix = unique_prefix()
    with (
        instance(tmp_path, "a", redis_process.url, prefix) as (_, a),
        instance(tmp_path, "b", redis_process.url, prefix) as (_, b),
    ):

        async def scenario() -> None:
            users = ["ann", "bob"]
            runs: dict[str, set[str]] = {u: set() for u in users}
            started = asyncio.Event()

            def done(user: str) -> Done:
                return lambda items: started.is_set() and ended(runs[user])(items)

            clients = {
                (user, kind): asyncio.create_task(
                    (ws_events if kind == "ws" else sse_events)(b, user, done(user))
                )
                for user in users
                for kind in ("ws", "sse")
            }
            # And a client without a cursor: only what happens after it connected ("live").
            clients["ann", "live"] = asyncio.create_task(
                until_done(ws_items(b, "ann", after=""), done("ann"), 60)
            )
            await asyncio.sleep(0.5)
            for _ in range(2):
                for user in users:
                    runs[user].add(await start_run(a, user, count=5))
            started.set()
            for (user, _kind), task in clients.items():
                check_user(await task, user, runs[user])
            for user in users:  # WebSocket and SSE clients saw the same stream
                ws = [(e["run_id"], e["seq"]) for e in clients[user, "ws"].result()]
                sse = [(e["run_id"], e["seq"]) for e in clients[user, "sse"].result()]
                assert ws == sse
                if user == "ann":
                    live = [(e["run_id"], e["seq"]) for e in clients[user, "live"].result()]
                    assert live == ws
                ids = [e["_id"] for e in clients[user, "sse"].result()]
                assert len(set(ids)) == len(ids)
            # Cursors: refused as with the in-memory sink when not a cursor or ahead of the
            # newest event; another user's is answered with events_lost, then own events only.
            newest = clients["ann", "sse"].result()[-1]["_id"]
            epoch, _, number = newest.rpartition("-")
            for bad in ("bogus", f"{epoch}-{int(number) + 500}"):
                first = await first_sse_item(b, "ann", bad)
                assert first["event"] == "error", first
                assert first["data"]["error"] == "invalid_cursor"
                assert bad in first["data"]["message"]
            foreign = clients["bob", "sse"].result()[0]["_id"]
            first = await first_sse_item(b, "ann", foreign)
            assert first["data"]["type"] == "events_lost" and first["data"]["after"] == foreign
            rest = await sse_events(b, "ann", ended(runs["ann"]), last_event_id=foreign)
            check_user([e for e in rest if e["type"] != "events_lost"], "ann", runs["ann"])

        asyncio.run(scenario())


async def first_sse_item(port: int, user: str, last_event_id: str) -> dict[str, Any]:
    """The first item of an SSE stream resumed at ``last_event_id`` (errors included)."""
    headers = {**auth(user), "Last-Event-ID": last_event_id}
    async with (
        asyncio.timeout(20),
        httpx.AsyncClient(timeout=20) as client,
        client.stream("GET", f"http://127.0.0.1:{port}/v1/events", headers=headers) as resp,
    ):
        async for item in sse_items(resp):
            return item
    raise AssertionError("the stream ended without an item")


def test_resume_after_an_instance_restarts_loses_and_repeats_nothing(
    tmp_path: Path, redis_process: RedisProcess
) -> None:
    prefix = unique_prefix()
    user = "cat"
    with instance(tmp_path, "b", redis_process.url, prefix) as (_, b):
        with instance(tmp_path, "a", redis_process.url, prefix) as (proc, a):

            async def first_part() -> tuple[str, list[dict[str, Any]]]:
                # The run goes on on B while the client's instance, A, restarts.
                run_id = await start_run(b, user, count=30, delay=0.05)
                reader = asyncio.create_task(sse_events(a, user, lambda items: False))
                await asyncio.sleep(0.4)  # streaming from A, mid-run
                proc.send_signal(signal.SIGTERM)
                return run_id, await reader

            run_id, seen = asyncio.run(first_part())
            assert proc.wait(30) == 0
        assert seen, "the client streamed nothing before the restart"
        assert seen[-1]["type"] != "agent_completed", "the run ended before the restart"
        last = seen[-1]["_id"]
        with instance(tmp_path, "a", redis_process.url, prefix) as (_, a):

            async def resume() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
                on_a = sse_events(a, user, ended({run_id}), last_event_id=last)
                on_b = ws_events(b, user, ended({run_id}), after=last)
                return await asyncio.gather(on_a, on_b)

            rest_a, rest_b = asyncio.run(resume())
    for rest in (rest_a, rest_b):
        events = [*seen, *rest]
        check_user(events, user, {run_id})
        assert [e["seq"] for e in events] == list(range(1, 33))
        assert events[-1]["status"] == "succeeded"


def test_redis_killed_mid_stream_loses_nothing_acknowledged(tmp_path: Path) -> None:
    server = RedisProcess(tmp_path / "redis").start()
    prefix = unique_prefix()
    user = "dan"
    try:
        with instance(tmp_path, "a", server.url, prefix) as (_, a):

            async def scenario() -> tuple[list[dict[str, Any]], set[str]]:
                runs: set[str] = set()
                started = asyncio.Event()
                client = asyncio.create_task(
                    ws_events(
                        a, user, lambda items: started.is_set() and ended(runs)(items), timeout=90
                    )
                )
                await asyncio.sleep(0.3)
                runs.add(await start_run(a, user, count=40, delay=0.02))
                await asyncio.sleep(0.3)
                server.kill()
                await until_health(a, 503)
                async with httpx.AsyncClient(timeout=5) as http:
                    health = (await http.get(f"http://127.0.0.1:{a}/healthz")).json()
                assert health["status"] == "degraded"
                assert [u["plugin"] for u in health["unready"]] == ["redis"]
                # Runs started and finished while Redis is down complete all the same.
                outage_run = await start_run(a, user, count=10)
                runs.add(outage_run)
                for run_id in runs:
                    for _ in range(300):
                        if await run_status(a, user, run_id) != "running":
                            break
                        await asyncio.sleep(0.05)
                    assert await run_status(a, user, run_id) == "succeeded"
                server.start()
                await until_health(a, 200)
                started.set()
                return await client, runs

            items, runs = asyncio.run(scenario())
            check_user(items, user, runs)
            # What was acknowledged before the kill survived it (AOF): the whole log is there.
            everything = asyncio.run(sse_events(a, user, ended(runs)))
            assert [(e["run_id"], e["seq"]) for e in everything] == [
                (e["run_id"], e["seq"]) for e in items
            ]
    finally:
        server.stop()


async def until_health(port: int, status: int, timeout: float = 20) -> None:
    async with asyncio.timeout(timeout), httpx.AsyncClient(timeout=5) as client:
        while (  # noqa: ASYNC110 - another process's state
            await client.get(f"http://127.0.0.1:{port}/healthz")
        ).status_code != status:
            await asyncio.sleep(0.05)


def test_plugins_command_shows_the_redis_connection(
    tmp_path: Path, redis_process: RedisProcess
) -> None:
    def plugins(url: str | None) -> dict[str, Any]:
        env = serve_env(tmp_path)
        if url is not None:
            env["AGENTENGINE_REDIS__URL"] = url
        out = subprocess.run(
            [AGENTENGINE, "plugins", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=tmp_path,
        )
        data = json.loads(out.stdout)
        (redis,) = [p for p in data["plugins"] if p["name"] == "redis"]
        return dict(redis["status"][0])

    up = plugins(redis_process.url)
    assert up["state"] == "reachable" and up["version"], up
    assert "aof (appendfsync everysec)" in up["persistence"]
    down = plugins(f"redis://127.0.0.1:{redis_process.port + 1}/0")
    assert down["state"] == "unreachable" and down["ready"] is False
    assert plugins(None)["state"] == "inactive"


@pytest.mark.slow
def test_fifty_users_twenty_runs_each_across_two_instances(
    tmp_path: Path, redis_process: RedisProcess
) -> None:
    prefix = unique_prefix()
    with (
        instance(tmp_path, "a", redis_process.url, prefix) as (_, a),
        instance(tmp_path, "b", redis_process.url, prefix) as (_, b),
    ):

        async def scenario() -> None:
            users = [f"soak{i:02d}" for i in range(50)]
            runs: dict[str, set[str]] = {u: set() for u in users}
            started = asyncio.Event()

            def done(user: str) -> Done:
                return lambda items: started.is_set() and ended(runs[user])(items)

            # Each user's client on the instance its runs do not start on (half of them).
            clients = {
                user: asyncio.create_task(
                    ws_events(b if i % 2 else a, user, done(user), timeout=240)
                )
                for i, user in enumerate(users)
            }
            await asyncio.sleep(1.0)
            limit = asyncio.Semaphore(20)

            async def one(user: str, port: int) -> None:
                async with limit:
                    runs[user].add(await start_run(port, user, count=3))

            await asyncio.gather(
                *(
                    one(user, a if (i + k) % 2 else b)
                    for k in range(20)
                    for i, user in enumerate(users)
                )
            )
            started.set()
            for user, task in clients.items():
                items = await task
                check_user(items, user, runs[user])
                assert len(items) == 20 * 5

        asyncio.run(scenario())
