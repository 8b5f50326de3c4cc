"""The application of docs/embedding.md (its ``app.py``, as the page builds it) under a real
``uvicorn`` process: on SIGTERM the runs drain while the WebSockets stay open (new runs get
503 with ``Retry-After``, the readiness probe 503), every client receives every run's terminal
event, runs outlasting the drain end ``cancelled``, and only then does uvicorn close
connections and exit."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from embedding_app import write_app
from server_helpers import eventually, free_port, serve_env
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

USERS = ("alice", "bob")


def _auth(user: str) -> dict[str, str]:
    return {"authorization": f"Bearer {user}"}


@contextmanager
def uvicorn_process(
    tmp_path: Path, drain_timeout: float
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``uvicorn app:app`` serving the page's ``app.py`` on a free loopback port, once it is
    ready; yields (process, base URL). Killed on exit if still running."""
    write_app(tmp_path)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "app:app", "--port", str(port)],
        cwd=tmp_path,  # chat.db goes here
        env=serve_env(tmp_path, AGENTENGINE_ENGINE__DRAIN_TIMEOUT=str(drain_timeout)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.communicate()[0]
            try:
                if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "uvicorn did not come up"
            time.sleep(0.1)
        yield proc, base
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


async def _read_until_closed(ws: ClientConnection, into: list[dict[str, Any]]) -> Any:
    """Append every frame to ``into`` until the server closes; the close frame received."""
    try:
        async with asyncio.timeout(60):
            while True:
                into.append(json.loads(await ws.recv()))
    except ConnectionClosed as exc:
        return exc.rcvd


async def _sigterm_during_runs(
    proc: subprocess.Popen[str], base: str
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any], dict[str, str], httpx.Response]:
    """Two users streaming, each with a short and an endless run; SIGTERM; a run asked for
    during the drain. Returns the frames and close frame of each user's WebSocket, the runs
    (run id: "user/short" or "user/long") and the answer to the run asked for while draining."""
    ws_base = base.replace("http://", "ws://")
    sockets = {
        u: await connect(f"{ws_base}/events", additional_headers=_auth(u), open_timeout=20)
        for u in USERS
    }
    frames: dict[str, list[dict[str, Any]]] = {u: [] for u in USERS}
    readers = {u: asyncio.create_task(_read_until_closed(sockets[u], frames[u])) for u in USERS}
    runs: dict[str, str] = {}
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        for user in USERS:
            for kind, seconds in (("short", 0.5), ("long", 3600)):
                body = {"input": {"message": f"{user} {kind}", "seconds": seconds}}
                r = await client.post("/chat", json=body, headers=_auth(user))
                assert r.status_code == 202, r.text
                runs[r.json()["run_id"]] = f"{user}/{kind}"

        def thinking(user: str) -> int:
            return sum(f.get("type") == "agent_thinking" for f in frames[user])

        # Every run is under way (and every stream live) before the signal.
        await eventually(lambda: all(thinking(u) == 2 for u in USERS), what="runs started")
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            while (await client.get("/ready")).status_code != 503:  # noqa: ASYNC110 - another process
                await asyncio.sleep(0.02)
        late = {"input": {"message": "too late"}}
        refused = await client.post("/chat", json=late, headers=_auth("carol"))
    closes = {u: await readers[u] for u in USERS}
    return frames, closes, runs, refused


@pytest.mark.slow
def test_sigterm_under_uvicorn_drains_the_docs_app_before_connections_close(
    tmp_path: Path,
) -> None:
    with uvicorn_process(tmp_path, drain_timeout=2.0) as (proc, base):
        frames, closes, runs, refused = asyncio.run(_sigterm_during_runs(proc, base))
        output = proc.communicate(timeout=60)[0]
    # New runs during the drain: 503 with Retry-After, saying why.
    assert refused.status_code == 503, refused.text
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"] == "shutting_down"
    # Every client got its own runs' terminal events, the short run succeeded, the endless one
    # was cancelled at the drain deadline; and only then did the server close the stream.
    for user, received in frames.items():
        ended = {f["run_id"]: f for f in received if f.get("type") == "agent_completed"}
        mine = {run_id: name for run_id, name in runs.items() if name.startswith(f"{user}/")}
        assert set(ended) == set(mine), (user, received)
        for run_id, name in mine.items():
            expected = "succeeded" if name.endswith("/short") else "cancelled"
            assert ended[run_id]["status"] == expected, (name, ended[run_id])
        assert {f["user_id"] for f in received} == {user}
        assert closes[user] is not None and closes[user].code == 1000, closes[user]
    # The process exits (uvicorn re-raises the signal it stopped on, as it always does).
    assert proc.returncode in (0, -signal.SIGTERM), output
    assert "draining runs before connections close" in output
    assert "drained" in output
