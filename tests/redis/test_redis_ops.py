"""The operator's side of the run queue (``[redis] queue = true``): what clients get while
Redis is down, the queue's figures in ``agentengine plugins`` and ``GET /metrics``, and a
Redis restart with its append-only file while runs are queued and executing."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
from redis_server import RedisProcess, unique_prefix
from server_helpers import CHATTER, SECRET, make_token, serve_process
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
