"""``agentengine serve`` as a real subprocess: refusing bad setups, and SIGTERM draining."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from server_helpers import (
    AGENTENGINE,
    SLOW_PLUGIN,
    free_port,
    recv_until,
    serve_env,
    serve_process,
)
from websockets.exceptions import ConnectionClosed


def test_serve_refuses_to_start_without_a_usable_secret(tmp_path: Path) -> None:
    cases: list[tuple[list[str], dict[str, str], str]] = [
        ([], {}, "AGENTENGINE_JWT_SECRET"),
        ([], {"AGENTENGINE_JWT_SECRET": "short"}, "at least 32 bytes"),
        (["--dev"], {"AGENTENGINE_JWT_SECRET": "short"}, "at least 32 bytes"),
        (["--dev", "--host", "0.0.0.0"], {}, "loopback"),
        (["--dev", "--plugin", "no_such_module_xyz"], {}, "no_such_module_xyz"),
    ]
    for args, extra, needle in cases:
        proc = subprocess.run(  # noqa: PLW1510 - the exit status is what is checked
            [AGENTENGINE, "serve", "--port", str(free_port()), *args],
            env=serve_env(tmp_path, **extra),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert needle in proc.stderr, (args, proc.stderr)
        assert "short" not in proc.stderr.replace("shorter", "")  # the secret is not echoed


@contextmanager
def serve(tmp_path: Path, *args: str, **env: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """``agentengine serve`` with the slow plugin (see ``serve_process``)."""
    with serve_process(tmp_path, *args, plugins={"slowplug": SLOW_PLUGIN}, env=env) as served:
        yield served


async def _sigterm_while_running(
    proc: subprocess.Popen[str], port: int, token: str, seconds: float
) -> tuple[list[dict[str, Any]], Any, list[dict[str, Any]]]:
    """Start a run, SIGTERM the server, return (ws frames, ws close frame, sse events)."""
    from websockets.asyncio.client import connect

    ws = await connect(
        f"ws://127.0.0.1:{port}/v1/ws",
        subprotocols=["bearer", token],  # type: ignore[list-item]
        open_timeout=20,
    )
    sse_events: list[dict[str, Any]] = []

    async def read_sse() -> None:
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            httpx.AsyncClient(timeout=60) as client,
            client.stream("GET", f"http://127.0.0.1:{port}/v1/events", headers=headers) as resp,
        ):
            sse_events.extend(
                [json.loads(line[6:]) async for line in resp.aiter_lines() if line[:6] == "data: "]
            )

    sse = asyncio.create_task(read_sse())
    await asyncio.sleep(0.3)  # the SSE stream is connected
    await ws.send(json.dumps({"type": "run", "agent": "slowpoke", "input": {"seconds": seconds}}))
    frames = await recv_until(ws, lambda f: f.get("type") == "agent_thinking")
    proc.send_signal(signal.SIGTERM)
    close = None
    try:
        async with asyncio.timeout(60):
            while True:
                frames.append(json.loads(await ws.recv()))
    except ConnectionClosed as exc:
        close = exc.rcvd
    async with asyncio.timeout(60):
        await sse  # the stream ends when the server closes it
    return frames, close, sse_events


def _token(port: int) -> str:
    r = httpx.post(f"http://127.0.0.1:{port}/v1/dev/token", json={"user": "alice"}, timeout=10)
    return str(r.json()["token"])


def test_sigterm_drains_runs_closes_connections_and_exits_0(tmp_path: Path) -> None:
    with serve(tmp_path, "--dev") as (proc, port):
        frames, close, sse_events = asyncio.run(
            _sigterm_while_running(proc, port, _token(port), seconds=1.5)
        )
        output = proc.communicate(timeout=60)[0]
        assert proc.returncode == 0, output
    terminal = [f for f in frames if f.get("type") == "agent_completed"]
    assert len(terminal) == 1, frames
    assert terminal[0]["status"] == "succeeded"
    assert terminal[0]["output"] == "finished"
    assert close is not None
    assert close.code == 1001, close
    assert [e["type"] for e in sse_events][-1] == "agent_completed"
    assert sse_events[-1]["status"] == "succeeded"
    assert "shutting down: draining runs" in output
    assert "shutdown complete" in output


def test_sigterm_past_the_drain_deadline_cancels_and_still_exits_0(tmp_path: Path) -> None:
    env = {"AGENTENGINE_ENGINE__DRAIN_TIMEOUT": "0.5"}
    with serve(tmp_path, "--dev", **env) as (proc, port):
        started = time.monotonic()
        frames, close, sse_events = asyncio.run(
            _sigterm_while_running(proc, port, _token(port), seconds=600)
        )
        output = proc.communicate(timeout=60)[0]
        assert proc.returncode == 0, output
        assert time.monotonic() - started < 60
    terminal = [f for f in frames if f.get("type") == "agent_completed"]
    assert len(terminal) == 1, frames
    assert terminal[0]["status"] == "cancelled"
    assert close is not None
    assert close.code == 1001
    assert sse_events[-1]["type"] == "agent_completed"
    assert sse_events[-1]["status"] == "cancelled"


def test_sigint_also_shuts_down_cleanly_and_production_has_no_dev_token(tmp_path: Path) -> None:
    secret = "k" * 48
    with serve(tmp_path, AGENTENGINE_JWT_SECRET=secret) as (proc, port):
        assert httpx.post(
            f"http://127.0.0.1:{port}/v1/dev/token", json={"user": "a"}, timeout=10
        ).status_code in (404, 405)
        proc.send_signal(signal.SIGINT)
        output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, output
    assert secret not in output
