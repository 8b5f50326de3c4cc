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

import httpx
import pytest
from agentengine import ExecutionEngineFactory
from agentengine_server import ApiError, ServerSettings, create_app
from server_helpers import SECRET, dev_token, recv_until, serve_process
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


# -- connections per user ------------------------------------------------------------------------


async def _ws_accepted(port: int, token: str) -> ClientConnection | int:
    """Open a WebSocket; the connection if the server kept it, else its close code. A kept
    connection answers a frame (here an error frame for an unknown run); a refused one is
    closed right after the handshake, before reading any."""
    ws = await _ws(port, token)
    try:
        await ws.send(json.dumps({"type": "cancel", "run_id": "run-none"}))
        async with asyncio.timeout(20):
            answer = json.loads(await ws.recv())
    except ConnectionClosedError as exc:
        closed = exc.rcvd
    else:
        assert answer["type"] == "error", answer
        return ws
    assert closed is not None
    assert "too many connections" in closed.reason, closed.reason
    return closed.code


@pytest.mark.slow
def test_connections_per_user_are_bounded_across_websocket_and_sse(tmp_path: Path) -> None:
    """With ``max_connections_per_user = 3``: of six WebSockets alice opens at once, three are
    kept and three closed with 4429; while she holds three, an SSE stream of hers is refused with
    429 ``too_many_connections``. Bob, connecting at the same time, is not limited by her (his
    three are kept), and her kept connections work. Closing a WebSocket frees its place, for
    SSE as for WebSocket. /metrics counts the refusals by transport, without user ids."""
    limit = 3
    with _serve(tmp_path, AGENTENGINE_SERVER__MAX_CONNECTIONS_PER_USER=str(limit)) as (proc, port):
        alice, bob = dev_token(port, "alice"), dev_token(port, "bob")
        base = f"http://127.0.0.1:{port}"

        async def scenario() -> None:
            outcomes = await asyncio.gather(
                *(_ws_accepted(port, alice) for _ in range(6)),
                *(_ws_accepted(port, bob) for _ in range(limit)),
            )
            alices, bobs = outcomes[:6], outcomes[6:]
            kept = [ws for ws in alices if not isinstance(ws, int)]
            assert len(kept) == limit, alices
            assert sorted(c for c in alices if isinstance(c, int)) == [4429] * 3, alices
            assert all(not isinstance(ws, int) for ws in bobs), bobs
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                refused = await client.get(
                    "/v1/events", headers={"Authorization": f"Bearer {alice}"}
                )
                assert refused.status_code == 429, refused.text
                body = refused.json()
                assert body["error"] == "too_many_connections", body
                assert body["limit"] == limit, body
                assert "max_connections_per_user" in body["message"], body
                assert refused.headers.get("retry-after"), refused.headers
                # Bob is at the limit too, on his own count: once one of his WebSockets is
                # closed, his SSE stream is served.
                first_bob = bobs[0]
                assert not isinstance(first_bob, int)
                await first_bob.close()
                for _attempt in range(200):
                    async with client.stream(
                        "GET", "/v1/events", headers={"Authorization": f"Bearer {bob}"}
                    ) as stream:
                        if stream.status_code == 200:
                            break
                        assert stream.status_code == 429
                    await asyncio.sleep(0.05)  # the server has not seen the close yet
                else:
                    raise AssertionError("bob's closed WebSocket never freed its place")
                # ... and the SSE stream, now closed, frees its place in turn.
                for _attempt in range(200):
                    bob_again = await _ws_accepted(port, bob)
                    if not isinstance(bob_again, int):
                        break
                    await asyncio.sleep(0.05)
                else:
                    raise AssertionError("bob's closed SSE stream never freed its place")
                assert await _ws_accepted(port, bob) == 4429  # back at his limit
                for ws in kept:
                    assert not isinstance(ws, int)
                    await _echo_run(ws, "kept")
                # Alice closes one: its place is hers again.
                first = kept.pop()
                assert not isinstance(first, int)
                await first.close()
                for _attempt in range(200):
                    again = await _ws_accepted(port, alice)
                    if not isinstance(again, int):
                        break
                    await asyncio.sleep(0.05)  # the server has not seen the close yet
                else:
                    raise AssertionError("alice's closed WebSocket never freed its place")
                await _echo_run(again, "again")
                metrics = (await client.get("/metrics")).text
            refused_lines = [
                line
                for line in metrics.splitlines()
                if line.startswith("agentengine_server_connections_refused_total{")
            ]
            counts = {line.split('"')[1]: float(line.split()[-1]) for line in refused_lines}
            assert counts["sse"] == 1, refused_lines
            assert counts["ws"] >= 3, refused_lines  # plus any retry above
            assert "alice" not in metrics and "bob" not in metrics
            for ws in [*kept, again, bob_again, *bobs[1:]]:
                assert not isinstance(ws, int)
                await ws.close()

        asyncio.run(scenario())
        _stop(proc)


def test_stream_slots_are_counted_per_user_released_once_and_0_means_no_limit() -> None:
    """``ServerState.open_stream``, the one count of both transports: per user, a slot given
    back twice counts once, and ``max_connections_per_user = 0`` sets no limit."""
    factory = ExecutionEngineFactory(idle_ttl=None)
    settings = ServerSettings(max_connections_per_user=2)
    state = create_app(factory, secret=SECRET, settings=settings).state.agentengine
    first = state.open_stream("alice", "ws")
    second = state.open_stream("alice", "sse")
    with pytest.raises(ApiError) as refused:
        state.open_stream("alice", "sse")
    assert refused.value.status == 429
    assert refused.value.body()["error"] == "too_many_connections"
    bobs = state.open_stream("bob", "ws")  # another user's count
    first.release()
    first.release()  # once only: alice holds one, not zero
    third = state.open_stream("alice", "ws")
    with pytest.raises(ApiError):
        state.open_stream("alice", "ws")
    assert state.metrics.clients_connected == {"ws": 2, "sse": 1}
    assert state.metrics.connections_refused == {"ws": 1, "sse": 1}
    for slot in (second, third, bobs):
        slot.release()
    assert state.metrics.clients_connected == {"ws": 0, "sse": 0}

    unlimited = ServerSettings(max_connections_per_user=0)
    state = create_app(factory, secret=SECRET, settings=unlimited).state.agentengine
    slots = [state.open_stream("alice", "ws") for _ in range(100)]
    assert state.metrics.clients_connected["ws"] == 100
    assert state.metrics.connections_refused == {"ws": 0, "sse": 0}
    for slot in slots:
        slot.release()
