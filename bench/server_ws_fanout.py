"""Events pushed per second to 1,000 WebSocket clients: agentengine-server vs a bare Starlette
endpoint pushing the same frames, measured in one run; plus emission-to-receipt latency.

    uv run python bench/server_ws_fanout.py [--users 100] [--per-user 10] [--events 50]

Each server runs in its own subprocess on 127.0.0.1 (uvicorn, websockets sans-I/O, no
compression); this process holds the clients. One connection per user asks for a burst; every
connection of that user receives the burst's frames. The rate is frames received by all
clients divided by the time from the first request to the last frame. Latency is the frame's
``ts`` (set when the event was emitted) to its receipt. The target is a ratio of at least 0.6.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from agentengine import RunContext, agent, hookimpl

HERE = Path(__file__).resolve().parent
SECRET = "bench-secret-" + "x" * 40


# -- the agent that emits a burst (loaded by `agentengine serve --plugin`) --------------------


@agent(name="burst")
async def burst(run: RunContext, events: int, pace: float = 0.0) -> int:
    """Emit ``events`` thinking events, ``pace`` seconds apart (0: just yield)."""
    for i in range(events):
        await run.think(f"step {i} of the burst, some text to give it a realistic size")
        await asyncio.sleep(pace)
    return events


class BurstPlugin:
    """Registers the ``burst`` agent."""

    name = "bench-burst"

    @hookimpl
    def agentengine_register_agents(self, registry: Any) -> None:
        registry.add(burst)


# -- the bare server ------------------------------------------------------------------------


def bare_app() -> Any:
    """A Starlette app that pushes frames of the same shape and size, with no engine."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route, WebSocketRoute
    from starlette.websockets import WebSocket

    connections: dict[str, set[WebSocket]] = {}
    cursors: dict[str, int] = {}
    epoch = os.urandom(4).hex()  # cursors shaped like the in-memory sink's: <epoch>-<n>

    async def push(user: str, events: int, pace: float) -> None:
        run_id = f"run-{os.urandom(16).hex()}"
        thread_id = f"thread-{os.urandom(16).hex()}"
        for i in range(events + 2):
            cursors[user] = cursors.get(user, 0) + 1
            frame = json.dumps(
                {
                    "type": "agent_thinking",
                    "run_id": run_id,
                    "user_id": user,
                    "thread_id": thread_id,
                    "agent": "burst",
                    "seq": i + 1,
                    "ts": datetime.now().astimezone().isoformat(),
                    "cursor": f"{epoch}-{cursors[user]}",
                    "text": f"step {i} of the burst, some text to give it a realistic size",
                    "step": i + 1,
                },
                separators=(",", ":"),
            )
            for ws in list(connections.get(user, ())):
                await ws.send_text(frame)
            await asyncio.sleep(pace)

    async def endpoint(ws: WebSocket) -> None:
        user = ws.query_params["user"]
        await ws.accept()
        connections.setdefault(user, set()).add(ws)
        tasks = set()
        try:
            while True:
                msg = await ws.receive()
                if msg["type"] == "websocket.disconnect":
                    return
                data = json.loads(msg["text"])
                task = asyncio.create_task(
                    push(user, data["input"]["events"], data["input"].get("pace", 0.0))
                )
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                await ws.send_text(json.dumps({"type": "run_accepted", "run_id": "x"}))
        finally:
            connections[user].discard(ws)

    async def healthz(request: Any) -> Any:
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[Route("/healthz", healthz), WebSocketRoute("/v1/ws", endpoint)])


def run_bare(port: int) -> None:
    import uvicorn

    uvicorn.run(
        bare_app(),
        host="127.0.0.1",
        port=port,
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        access_log=False,
        log_level="warning",
    )


# -- the clients ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(kind: str, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(HERE), "AGENTENGINE_JWT_SECRET": SECRET}
    env["AGENTENGINE_SERVER__WS_PER_MESSAGE_DEFLATE"] = "false"
    env["AGENTENGINE_ENGINE__MAX_CONCURRENT_RUNS"] = "100000"
    env["AGENTENGINE_SERVER__MAX_CONNECTIONS_PER_USER"] = "0"  # --per-user may pass the default
    if kind == "bare":
        cmd = [sys.executable, str(HERE / "server_ws_fanout.py"), "--bare-server", str(port)]
    else:
        agentengine = str(Path(sys.executable).parent / "agentengine")
        cmd = [
            agentengine,
            "serve",
            "--port",
            str(port),
            "--plugin",
            "server_ws_fanout:BurstPlugin",
            "--log-level",
            "warning",
        ]
    return subprocess.Popen(cmd, env=env)


async def _wait_up(port: int) -> None:
    import httpx

    async with httpx.AsyncClient() as client:
        for _ in range(300):
            try:
                if (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("server did not start")


def _token(user: str) -> str:
    import jwt

    return jwt.encode({"sub": user, "exp": int(time.time()) + 3600}, SECRET, algorithm="HS256")


class _RawClient(asyncio.Protocol):
    """A minimal WebSocket client: the handshake, unmasked server frames, masked sends.

    The websockets client costs tens of microseconds per frame, which would make this process
    (one core for 1,000 clients) the bottleneck for both servers; this one only splits frames
    and keeps the payloads (parsed after the round).
    """

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.handshaken = asyncio.get_running_loop().create_future()
        self.frames: list[tuple[float, bytes]] = []
        self.want = 0
        self.done: asyncio.Future[None] | None = None
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        if not self.handshaken.done():
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end])
            del buf[: end + 4]
            if not head.startswith(b"HTTP/1.1 101"):
                self.handshaken.set_exception(RuntimeError(head.decode(errors="replace")))
                return
            self.handshaken.set_result(None)
        now = time.time()
        pos = 0
        size = len(buf)
        while size - pos >= 2:
            length = buf[pos + 1] & 0x7F
            header = 2
            if length == 126:
                if size - pos < 4:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                header = 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                header = 10
            if size - pos < header + length:
                break
            opcode = buf[pos] & 0x0F
            payload = bytes(buf[pos + header : pos + header + length])
            pos += header + length
            if opcode == 0x9:  # ping: answer, or the server drops us after its ping timeout
                self._send(0xA, payload)
            elif b'"seq"' in payload:
                self.frames.append((now, payload))
        del buf[:pos]
        if self.done is not None and not self.done.done() and len(self.frames) >= self.want:
            self.done.set_result(None)

    def send_text(self, text: str) -> None:
        self._send(0x1, text.encode())

    def _send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        n = len(payload)
        if n < 126:
            header = bytes([0x80 | opcode, 0x80 | n])
        else:
            header = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
        self.transport.write(header + mask + masked)


async def _raw_connect(port: int, path: str) -> _RawClient:
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(_RawClient, "127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    client.transport.write(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    await asyncio.wait_for(client.handshaken, 60)
    return client


async def _connect_all(kind: str, port: int, users: int, per_user: int) -> list[_RawClient]:
    conns: list[_RawClient] = []
    for u in range(users):
        user = f"user-{u:04d}"
        path = f"/v1/ws?user={user}" if kind == "bare" else f"/v1/ws?token={_token(user)}"
        conns.extend([await _raw_connect(port, path) for _ in range(per_user)])
    return conns


async def _round(
    conns: list[_RawClient], per_user: int, events: int, pace: float
) -> dict[str, float]:
    """One burst per user; frames/s over all clients and emission-to-receipt latency."""
    loop = asyncio.get_running_loop()
    per_conn = events + 2  # started + thinking * events + completed (bare: as many frames)
    for c in conns:
        c.frames = []
        c.want = per_conn
        c.done = loop.create_future()
    started = time.perf_counter()
    burst = {"events": events, "pace": pace}
    frame = json.dumps({"type": "run", "agent": "burst", "input": burst})
    for i in range(0, len(conns), per_user):
        conns[i].send_text(frame)
    try:
        await asyncio.wait_for(asyncio.gather(*(c.done for c in conns if c.done)), timeout=120)
    except TimeoutError:
        short = [len(c.frames) for c in conns if len(c.frames) < per_conn]
        raise RuntimeError(f"{len(short)} clients incomplete: {short[:20]}") from None
    elapsed = time.perf_counter() - started
    total = sum(len(c.frames) for c in conns)
    latencies = sorted(
        (when - datetime.fromisoformat(json.loads(payload)["ts"]).timestamp()) * 1000
        for c in conns
        for when, payload in c.frames
    )
    return {
        "rate": total / elapsed,
        "p50_ms": latencies[len(latencies) // 2],
        "p99_ms": latencies[int(len(latencies) * 0.99)],
    }


async def _bench(
    users: int, per_user: int, events: int, rounds: int, pace: float
) -> dict[str, Any]:
    """Both servers up at once; rounds alternate between them, so that load from anything
    else on the machine hits both alike."""
    ports = {"bare": _free_port(), "agentengine": _free_port()}
    procs = {kind: _start(kind, port) for kind, port in ports.items()}
    try:
        for port in ports.values():
            await _wait_up(port)
        conns = {k: await _connect_all(k, p, users, per_user) for k, p in ports.items()}
        results: dict[str, list[dict[str, float]]] = {k: [] for k in ports}
        for round_no in range(rounds + 1):  # round 0 warms both up
            for kind in ports:
                r = await _round(conns[kind], per_user, events, pace)
                if round_no:
                    results[kind].append(r)
        for kind_conns in conns.values():
            for c in kind_conns:
                c.transport.close()
        return results
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait(60)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--bare-server":
        run_bare(int(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--per-user", type=int, default=10)
    parser.add_argument("--events", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--pace",
        type=float,
        default=0.0,
        help="seconds between a user's events (0: as fast as possible, the throughput test)",
    )
    args = parser.parse_args()
    clients = args.users * args.per_user
    print(
        f"{clients} WebSocket clients per server ({args.users} users x {args.per_user}), "
        f"{args.events + 2} frames per client per round, {args.rounds} rounds each, alternating"
        + (f", events {args.pace * 1000:g} ms apart" if args.pace else ", bursts")
    )
    results = asyncio.run(_bench(args.users, args.per_user, args.events, args.rounds, args.pace))
    medians = {}
    for kind, label in (("bare", "bare starlette"), ("agentengine", "agentengine-server")):
        rs = results[kind]
        rate = statistics.median(r["rate"] for r in rs)
        medians[kind] = rate
        print(
            f"{label:>20}: median {rate:>9,.0f} frames/s (best {max(r['rate'] for r in rs):,.0f})"
            f", latency p50 {statistics.median(r['p50_ms'] for r in rs):.1f} ms, "
            f"p99 {statistics.median(r['p99_ms'] for r in rs):.1f} ms (medians of rounds)"
        )
    ratios = [
        a["rate"] / b["rate"] for a, b in zip(results["agentengine"], results["bare"], strict=True)
    ]
    print(
        f"{'ratio':>20}: {medians['agentengine'] / medians['bare']:.2f}x the bare server's "
        f"median rate (per round: {', '.join(f'{r:.2f}' for r in ratios)}; target >= 0.6x)"
    )


if __name__ == "__main__":
    main()
