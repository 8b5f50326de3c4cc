"""Clients that misbehave at the transport level, against a real ``agentengine serve``: text
frames that are not UTF-8, and one user opening more event streams than allowed. Each is
refused clearly, alone: the same user's other connections and other users carry on."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from server_helpers import dev_token, recv_until, serve_process
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError


@contextmanager
def _serve(tmp_path: Path, **env: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """A ``--dev`` server logging JSON lines."""
    with serve_process(tmp_path, "--dev", "--log-json", env=env) as served:
        yield served


def _stop(proc: subprocess.Popen[str]) -> list[str]:
    """SIGTERM the server; its output lines once it exited."""
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    return out.splitlines()


def _json_lines(lines: list[str]) -> list[dict[str, Any]]:
    parsed = []
    for line in lines:
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict):
            parsed.append(item)
    return parsed


async def _ws(port: int, token: str) -> ClientConnection:
    return await connect(
        f"ws://127.0.0.1:{port}/v1/ws",
        subprotocols=["bearer", token],  # type: ignore[list-item]
        open_timeout=30,
    )


async def _echo_run(ws: ClientConnection, text: str) -> None:
    """Start an ``echo`` run on ``ws`` and read its events to the end: the connection works."""
    await ws.send(json.dumps({"type": "run", "agent": "echo", "input": {"text": text}}))
    frames = await recv_until(ws, lambda f: f.get("type") == "agent_completed")
    assert frames[-1]["status"] == "succeeded", frames


# -- text frames that are not UTF-8 --------------------------------------------------------------


@pytest.mark.slow
def test_text_frame_not_utf8_closes_with_1007_and_logs_one_warning(tmp_path: Path) -> None:
    """A text frame (whole, or split over fragments) that is not valid UTF-8 closes its
    connection with 1007 (invalid frame payload data) and logs one warning naming the user, no
    traceback; the user's other connection and another user's go on working. A frame too
    large (1009) is logged the same way."""
    with _serve(tmp_path) as (proc, port):
        alice, bob = dev_token(port, "alice"), dev_token(port, "bob")

        async def scenario() -> None:
            other = await _ws(port, alice)
            bobs = await _ws(port, bob)
            for payload in ([b"\xff\xfe not utf-8"], [b'{"type": "run", "x": "\xc3', b'"}']):
                bad = await _ws(port, alice)
                message: Any = payload[0] if len(payload) == 1 else iter(payload)
                await bad.send(message, text=True)
                with pytest.raises(ConnectionClosedError) as closed:
                    async with asyncio.timeout(20):
                        await bad.recv()
                assert closed.value.rcvd is not None
                assert closed.value.rcvd.code == 1007
                await _echo_run(other, "still here")
                await _echo_run(bobs, "untouched")
            # A frame over max_frame_bytes (64 KiB) closes with 1009, logged the same way.
            big = await _ws(port, alice)
            await big.send("x" * 70_000)
            with pytest.raises(ConnectionClosedError) as closed:
                async with asyncio.timeout(20):
                    await big.recv()
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1009
            await _echo_run(other, "still here")
            await other.close()
            await bobs.close()

        asyncio.run(scenario())
        lines = _stop(proc)
    output = "\n".join(lines)
    assert "Traceback" not in output, output
    assert "UnicodeDecodeError" not in output, output
    warnings = [
        item
        for item in _json_lines(lines)
        if item.get("level") == "warning" and "UTF-8" in str(item.get("event"))
    ]
    assert len(warnings) == 2, output
    assert all(w.get("user_id") == "alice" for w in warnings), warnings
    assert all(w.get("close_code") == 1007 for w in warnings), warnings
    too_big = [item for item in _json_lines(lines) if item.get("close_code") == 1009]
    assert [(w["level"], w["user_id"]) for w in too_big] == [("warning", "alice")], output
