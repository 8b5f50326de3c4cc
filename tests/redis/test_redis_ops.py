"""The operator's side of the run queue (``[redis] queue = true``): what clients get while
Redis is down, the queue's figures in ``agentengine plugins`` and ``GET /metrics``, and a
Redis restart with its append-only file while runs are queued and executing."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
from agentengine import RunContext, agent, hookimpl
from agentengine_redis.layout import slots_key
from agentengine_server.metrics import QUEUE_FIGURES
from prometheus_client.parser import text_string_to_metric_families
from redis_server import RedisProcess, unique_prefix, worker_process
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


def queue_env(url: str, prefix: str, **extra: str) -> dict[str, str]:
    return {
        "AGENTENGINE_REDIS__URL": url,
        "AGENTENGINE_REDIS__KEY_PREFIX": prefix,
        "AGENTENGINE_REDIS__QUEUE": "true",
        "AGENTENGINE_REDIS__HEALTH_INTERVAL": "0.2",
        "AGENTENGINE_REDIS__CONNECT_TIMEOUT": "0.5",
        "AGENTENGINE_REDIS__SOCKET_TIMEOUT": "0.5",
        "AGENTENGINE_JWT_SECRET": SECRET,
        **extra,
    }


def auth(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(user)}"}


def check_unavailable(response: httpx.Response) -> None:
    """A clean 503: JSON naming Redis and what to do, with ``Retry-After``."""
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["error"] == "unavailable", body
    assert body["dependency"] == "redis", body
    assert "Redis" in body["message"] and "retry" in body["message"], body
    assert int(response.headers["Retry-After"]) >= 1
    assert "Traceback" not in response.text


async def until_health(port: int, status: int, timeout: float = 20) -> None:
    async with asyncio.timeout(timeout), httpx.AsyncClient(timeout=5) as client:
        while (  # noqa: ASYNC110 - another process's state
            await client.get(f"http://127.0.0.1:{port}/healthz")
        ).status_code != status:
            await asyncio.sleep(0.05)


def test_redis_down_in_queue_mode_answers_503_not_500(tmp_path: Path) -> None:
    """With the queue on and its Redis stopped, submitting (REST and WebSocket), listing,
    getting and cancelling runs answer a clean 503 (``Retry-After``, a body naming Redis),
    ``/healthz`` says ``degraded``, and all of it works again once Redis is back."""
    server = RedisProcess(tmp_path / "redis").start()
    prefix = unique_prefix()
    (tmp_path / "a").mkdir()
    try:
        with serve_process(
            tmp_path / "a", plugins={"chatplug": CHATTER}, env=queue_env(server.url, prefix)
        ) as (proc, port):

            async def scenario() -> None:
                base = f"http://127.0.0.1:{port}"
                async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                    r = await client.post(
                        "/v1/runs", json={"agent": "chatter", "input": {}}, headers=auth("ann")
                    )
                    assert r.status_code == 202, r.text
                    run_id = r.json()["run_id"]  # queued: no worker runs
                    # A WebSocket connected before Redis went away (a new one cannot open its
                    # event stream while Redis is away: it ends with stream_failed).
                    async with connect(
                        f"ws://127.0.0.1:{port}/v1/ws",
                        subprotocols=["bearer", make_token("ann")],  # type: ignore[list-item]
                        open_timeout=20,
                    ) as ws:
                        await asyncio.sleep(0.3)  # its stream is open
                        server.kill()
                        await until_health(port, 503)
                        health = (await client.get("/healthz")).json()
                        assert health["status"] == "degraded"
                        r = await client.post(
                            "/v1/runs", json={"agent": "chatter", "input": {}}, headers=auth("ann")
                        )
                        check_unavailable(r)
                        check_unavailable(await client.get("/v1/runs", headers=auth("ann")))
                        check_unavailable(
                            await client.get(f"/v1/runs/{run_id}", headers=auth("ann"))
                        )
                        check_unavailable(
                            await client.post(f"/v1/runs/{run_id}/cancel", headers=auth("ann"))
                        )
                        # /metrics still answers (without the queue's figures).
                        assert (await client.get("/metrics")).status_code == 200
                        for frame in (
                            {"type": "run", "id": 1, "agent": "chatter", "input": {}},
                            {"type": "cancel", "id": 2, "run_id": run_id},
                        ):
                            await ws.send(json.dumps(frame))
                            async with asyncio.timeout(20):
                                while True:
                                    reply = json.loads(await ws.recv())
                                    if reply.get("id") == frame["id"]:
                                        break
                            assert reply["type"] == "error", reply
                            assert reply["error"] == "unavailable", reply
                            assert reply["dependency"] == "redis", reply
                    server.start()
                    await until_health(port, 200)
                    r = await client.get(f"/v1/runs/{run_id}", headers=auth("ann"))
                    assert r.status_code == 200 and r.json()["status"] == "running", r.text
                    r = await client.post(
                        "/v1/runs", json={"agent": "chatter", "input": {}}, headers=auth("ann")
                    )
                    assert r.status_code == 202, r.text

            asyncio.run(scenario())
            proc.terminate()
            log = proc.communicate(timeout=30)[0]
            assert "Traceback" not in log, log
    finally:
        server.stop()


def queue_metrics(port: int) -> dict[str, float]:
    """The queue's samples of ``GET /metrics``, by metric name and labels, as prometheus-client's
    own parser reads them (it refuses a malformed exposition); each queue family has the type
    ``QUEUE_FIGURES`` documents."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    kinds = {name: kind for name, _, kind, _ in QUEUE_FIGURES.values()}
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        # The parser names a counter's family without its ``_total``; its sample keeps it.
        documented = kinds.get(family.name) or kinds.get(family.name + "_total")
        if documented is None:
            continue
        assert family.type == documented, (family.name, family.type, documented)
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            samples[s.name + (f"{{{labels}}}" if labels else "")] = float(s.value)
    return samples


def plugins_output(path: Path, env: dict[str, str], *args: str) -> str:
    """What ``agentengine plugins *args`` prints."""
    out = subprocess.run(
        [AGENTENGINE, "plugins", *args],
        env=serve_env(path, **env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=path,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def plugins_queue_item(path: Path, env: dict[str, str]) -> dict[str, Any]:
    plugins = json.loads(plugins_output(path, env, "--json"))["plugins"]
    (redis,) = [p for p in plugins if p["name"] == "redis"]
    (item,) = [i for i in redis["status"] if i["name"] == "redis-queue"]
    return dict(item)


def eventually(check: Any, timeout: float = 20) -> Any:
    """``check()``'s value once it stops raising ``AssertionError``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_queue_figures_in_metrics_and_plugins(tmp_path: Path, redis_process: RedisProcess) -> None:
    """``GET /metrics`` and ``agentengine plugins`` show the queue: depth, runs queued and
    running, workers alive (heartbeat, gone on a clean stop) and runs lost (the counter
    key), with no user id anywhere in them."""
    prefix = unique_prefix()
    env = queue_env(
        redis_process.url,
        prefix,
        AGENTENGINE_REDIS__LEASE="3",
        AGENTENGINE_ENGINE__MAX_CONCURRENT_PER_USER="1",
        AGENTENGINE_ENGINE__DRAIN_TIMEOUT="0.2",
    )
    (tmp_path / "a").mkdir()
    with serve_process(tmp_path / "a", plugins={"chatplug": CHATTER}, env=env) as (_, port):
        empty = queue_metrics(port)
        assert empty == {
            "agentengine_queue_depth": 0,
            'agentengine_queue_runs{state="queued"}': 0,
            'agentengine_queue_runs{state="running"}': 0,
            "agentengine_queue_workers_alive": 0,
            "agentengine_queue_runs_lost_total": 0,
        }, empty
        for user in ("ann-secret-id", "ann-secret-id", "ann-secret-id", "bob-secret-id"):
            r = httpx.post(
                f"http://127.0.0.1:{port}/v1/runs",
                json={"agent": "chatter", "input": {"count": 100, "delay": 0.1}},
                headers=auth(user),
                timeout=10,
            )
            assert r.status_code == 202, r.text
        waiting = queue_metrics(port)
        assert waiting["agentengine_queue_depth"] == 4, waiting
        assert waiting['agentengine_queue_runs{state="queued"}'] == 4, waiting
        assert waiting['agentengine_queue_runs{state="running"}'] == 0, waiting
        with (
            worker_process(tmp_path / "w1", env, "--concurrency", "4"),
            worker_process(tmp_path / "w2", env, "--concurrency", "4") as w2,
        ):

            def two_running() -> dict[str, float]:
                m = queue_metrics(port)
                # One slot each: ann's other two runs wait.
                assert m['agentengine_queue_runs{state="running"}'] == 2, m
                assert m['agentengine_queue_runs{state="queued"}'] == 2, m
                assert m["agentengine_queue_depth"] == 0, m
                assert m["agentengine_queue_workers_alive"] == 2, m
                return m

            eventually(two_running)
            redis_process.client().set(f"{prefix}queue:lost", 3)  # what the reaper counts
            item = plugins_queue_item(tmp_path, env)
            assert item["state"] == "ok", item
            assert (item["workers_alive"], item["runs_running"], item["runs_lost_total"]) == (
                2,
                2,
                3,
            ), item
            assert "workers alive 2" in item["detail"], item
            # The same figures for a person reading the command's plain output.
            text = plugins_output(tmp_path, env)
            (line,) = [x for x in text.splitlines() if "status: redis-queue: ok" in x]
            # (The runs may have moved on since: only the figures that cannot change here.)
            assert re.search(r"queue depth \d+, runs queued \d+, running \d+", line), text
            assert "workers alive 2" in line, text
            assert "runs lost 3" in line and "secret-id" not in text, text
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
            assert "agentengine_queue_runs_lost_total 3" in text
            assert "secret-id" not in text
            w2.terminate()  # a clean stop: no longer counted alive, at once
            assert w2.wait(30) == 0

            def one_alive() -> None:
                m = queue_metrics(port)
                assert m["agentengine_queue_workers_alive"] == 1, m

            eventually(one_alive, timeout=2)  # well within the 3 s lease: it left


async def user_log(port: int, user: str, runs: set[str], timeout: float = 60) -> list[Any]:
    """The user's whole event log (SSE from the start) once every run of ``runs`` ended."""
    items: list[dict[str, Any]] = []
    async with (
        asyncio.timeout(timeout),
        httpx.AsyncClient(timeout=None) as client,
        client.stream("GET", f"http://127.0.0.1:{port}/v1/events?after=0", headers=auth(user)) as r,
    ):
        assert r.status_code == 200
        async for item in sse_items(r):
            assert item.get("event") != "error", item
            items.append(item["data"])
            if runs <= {e["run_id"] for e in items if e.get("type") == "agent_completed"}:
                return items
    raise AssertionError("the stream ended early")


def test_redis_killed_and_restarted_with_aof_loses_no_run(tmp_path: Path) -> None:
    """Runs queued and executing on a real worker when redis-server (``appendonly yes``,
    ``appendfsync always``) is killed with ``kill -9`` and restarted on the same port and
    directory: no queued run is lost, and every run ends with exactly one terminal event,
    its record saying so on the API."""
    server = RedisProcess(tmp_path / "redis", args=["--appendfsync", "always"]).start()
    prefix = unique_prefix()
    env = queue_env(
        server.url,
        prefix,
        AGENTENGINE_REDIS__LEASE="2",
        AGENTENGINE_ENGINE__MAX_CONCURRENT_PER_USER="1",
        AGENTENGINE_ENGINE__DRAIN_TIMEOUT="0.5",
    )
    users = ["ann", "bob", "cid"]
    (tmp_path / "a").mkdir()
    try:
        with (
            serve_process(tmp_path / "a", plugins={"chatplug": CHATTER}, env=env) as (_, port),
            worker_process(tmp_path / "w", env, "--concurrency", "2") as wproc,
        ):

            async def scenario() -> dict[str, set[str]]:
                runs: dict[str, set[str]] = {u: set() for u in users}
                async with httpx.AsyncClient(timeout=10) as client:
                    for _ in range(3):
                        for user in users:
                            r = await client.post(
                                f"http://127.0.0.1:{port}/v1/runs",
                                json={"agent": "chatter", "input": {"count": 10, "delay": 0.05}},
                                headers=auth(user),
                            )
                            assert r.status_code == 202, r.text
                            runs[user].add(r.json()["run_id"])

                    async def statuses() -> list[str]:
                        found = []
                        for user in users:
                            r = await client.get(
                                f"http://127.0.0.1:{port}/v1/runs", headers=auth(user)
                            )
                            found += [x["status"] for x in r.json()["runs"]]
                        return found

                    redis = server.client()
                    slots = [slots_key(prefix, u) for u in users]
                    async with asyncio.timeout(20):  # until both of the worker's slots are busy
                        while sum(redis.zcard(k) for k in slots) < 2:  # noqa: ASYNC110
                            await asyncio.sleep(0.01)
                    redis.close()
                    server.kill()
                    # Longer than a run: the runs executing end while Redis is away.
                    await asyncio.sleep(2.0)
                    server.start()
                    async with asyncio.timeout(60):
                        while set(await statuses()) != {"succeeded"}:  # noqa: ASYNC110
                            await asyncio.sleep(0.1)
                return runs

            runs = asyncio.run(scenario())
            for user in users:
                events = asyncio.run(user_log(port, user, runs[user]))
                assert {e["user_id"] for e in events} == {user}
                assert "events_lost" not in {e["type"] for e in events}
                assert set(check_runs_end_once(events)) == runs[user]
            wproc.terminate()
            log = wproc.communicate(timeout=30)[0]
            assert "Task exception was never retrieved" not in log, log
    finally:
        server.stop()


async def test_a_worker_stopped_while_redis_is_down_stops(tmp_path: Path) -> None:
    """A worker that waits for Redis to take a queued run (its wake-up read before Redis went
    away) still stops when told to: it does not wait for Redis for ever."""
    from agentengine import ExecutionEngineFactory
    from agentengine_redis import RedisPlugin
    from agentengine_redis.worker import Worker

    server = RedisProcess(tmp_path / "redis").start()
    plugin = RedisPlugin(
        {
            "url": server.url,
            "key_prefix": unique_prefix(),
            "queue": True,
            "connect_timeout": 0.3,
            "socket_timeout": 0.3,
        }
    )
    try:
        async with ExecutionEngineFactory(
            plugins=[plugin], load_entrypoints=False, drain_timeout=0.2
        ) as executor:
            worker = Worker(executor, 1)
            task = asyncio.create_task(worker.run())
            await asyncio.sleep(0.3)  # reading the work stream
            server.kill()
            wake = asyncio.create_task(worker._wake(b"1-0", {b"u": b"ann"}))
            worker._starting.add(wake)
            await asyncio.sleep(0.5)  # retrying, Redis away
            assert not wake.done()
            worker.stop()
            await asyncio.wait_for(task, 10)
            await asyncio.wait_for(worker.drain(), 10)
            assert wake.done()
    finally:
        server.stop()


@agent(name="napper")
async def napper(run: RunContext, seconds: float = 0.0, answer: str = "ok") -> str:
    await run.think("napping")
    await asyncio.sleep(seconds)
    return answer


class NapPlugin:
    name = "napplug"

    @hookimpl
    def agentengine_register_agents(self, registry: Any) -> None:
        registry.add(napper)


async def test_a_queued_runs_result_waits_through_a_redis_restart(tmp_path: Path) -> None:
    """``await handle.result()`` of a queued run rides through Redis going away and coming
    back (the run goes on on its worker), instead of failing with the outage."""
    from agentengine import ExecutionEngineFactory, UserExecutionContext
    from agentengine_redis import RedisPlugin
    from agentengine_redis.worker import Worker

    server = RedisProcess(tmp_path / "redis").start()
    config = {
        "url": server.url,
        "key_prefix": unique_prefix(),
        "queue": True,
        "connect_timeout": 0.3,
        "socket_timeout": 0.3,
    }
    try:
        async with (
            ExecutionEngineFactory(
                plugins=[RedisPlugin(config), NapPlugin()], load_entrypoints=False
            ) as api,
            ExecutionEngineFactory(
                plugins=[RedisPlugin(config), NapPlugin()], load_entrypoints=False
            ) as executor,
        ):
            worker = Worker(executor, 1)
            task = asyncio.create_task(worker.run())
            handle = await api.submit_run(
                UserExecutionContext.for_user("ann"), "napper", {"seconds": 1.0, "answer": "up"}
            )
            waiting = asyncio.create_task(handle.result())
            async with asyncio.timeout(20):
                while True:  # until the worker started it
                    record = await api.runs.get("ann", handle.run_id)
                    if record is not None and record.status == "running":
                        break
                    await asyncio.sleep(0.02)
            server.kill()
            await asyncio.sleep(1.5)  # the run ends while Redis is away
            assert not waiting.done()
            server.start()
            result = await asyncio.wait_for(waiting, 20)
            assert (result.status.value, result.output) == ("succeeded", "up")
            worker.stop()
            await task
            await worker.drain()
    finally:
        server.stop()
