"""The Redis event sink: events per second against a floor measured in the same run, and
publish-to-receipt latency on WebSocket clients of another instance.

    uv run python bench/redis_sink.py [--events 50000] [--users 100] [--rate 1000]

Needs ``redis-server`` on PATH; the bench starts its own on a free 127.0.0.1 port in a
temporary directory, with ``appendonly yes`` (``appendfsync everysec``), as the tests do.

* **Throughput.** ``--events`` thinking events of ``--users`` users, interleaved, go through
  ``RedisEventSink.publish`` and ``await sink.flush()`` (serialising each event, one
  pipelined script call per user and batch, the script numbering, trimming and expiring).
  The floor does the same appends the simplest way redis-py with hiredis can: each event
  serialised the same way and ``XADD``-ed to its user's stream, pipelined in batches of the
  same size, no numbering, no idempotence, no trimming. Best of 3 each, alternated. Target:
  the sink at least 0.7x the floor.
* **Latency.** One ``agentengine serve`` subprocess (instance B) on the same Redis, with
  ``--users`` WebSocket clients (one per user, live); this process is instance A and publishes
  ``--rate`` events per second spread over the users for ``--seconds``. Latency is a frame's
  ``ts`` (set just before ``publish``) to its receipt by the client. Target: p99 under 10 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import jwt
import redis
import redis.asyncio as aredis
from agentengine import AgentThinkingEvent
from agentengine_redis import RedisEventSink, RedisSettings

SECRET = "bench-secret-" + "x" * 40
TEXT = "step {i} of the burst, some text to give it a realistic size"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis(directory: Path) -> tuple[subprocess.Popen[bytes], int]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen(
        [
            *(binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory)),
            *("--appendonly", "yes", "--save", "", "--logfile", str(directory / "redis.log")),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    for _ in range(500):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.02)
    client.close()
    return proc, port


def event(user: str, seq: int) -> AgentThinkingEvent:
    return AgentThinkingEvent(
        run_id=f"run-{user}",
        user_id=user,
        thread_id="t",
        agent="bench",
        seq=seq,
        ts=datetime.now(UTC),
        text=TEXT.format(i=seq),
        step=seq,
    )


def workload(count: int, users: int) -> list[AgentThinkingEvent]:
    names = [f"user{i:04d}" for i in range(users)]
    return [event(names[i % users], i // users + 1) for i in range(count)]


async def sink_rate(url: str, events: list[AgentThinkingEvent], batch: int, tag: str) -> float:
    sink = RedisEventSink(RedisSettings(url=url, key_prefix=f"bench-{tag}:", batch_size=batch))
    for e in events:
        e.__dict__["cursor"] = None
    await sink.flush()
    started = time.perf_counter()
    for e in events:
        sink.publish(e)
    await sink.flush()
    elapsed = time.perf_counter() - started
    assert sink.metrics["events_stored"] == len(events), sink.metrics
    await sink.aclose()
    return len(events) / elapsed


async def floor_rate(url: str, events: list[AgentThinkingEvent], batch: int, tag: str) -> float:
    client = aredis.Redis.from_url(url)
    await client.ping()
    prefix = f"bench-{tag}:"
    started = time.perf_counter()
    for i in range(0, len(events), batch):
        pipe = client.pipeline(transaction=False)
        for e in events[i : i + batch]:
            payload = e.__pydantic_serializer__.to_json(e)
            pipe.xadd(f"{prefix}{{{e.user_id}}}:events", {"e": payload, "a": b"1"})
        await pipe.execute()
    elapsed = time.perf_counter() - started
    await client.aclose()
    return len(events) / elapsed


async def throughput(url: str, count: int, users: int, batch: int) -> dict[str, float]:
    events = workload(count, users)
    sinks, floors = [], []
    for round_ in range(3):
        floors.append(await floor_rate(url, events, batch, f"floor{round_}"))
        sinks.append(await sink_rate(url, events, batch, f"sink{round_}"))
    sink, floor = max(sinks), max(floors)
    return {"sink_events_per_s": sink, "floor_events_per_s": floor, "ratio": sink / floor}


# -- latency ----------------------------------------------------------------------------------


def token(user: str) -> str:
    now = int(time.time())
    return jwt.encode({"sub": user, "iat": now, "exp": now + 3600}, SECRET, algorithm="HS256")


def serve(url: str, prefix: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTENGINE_")}
    env |= {
        "AGENTENGINE_JWT_SECRET": SECRET,
        "AGENTENGINE_REDIS__URL": url,
        "AGENTENGINE_REDIS__KEY_PREFIX": prefix,
    }
    exe = str(Path(sys.executable).parent / "agentengine")
    proc = subprocess.Popen(
        [exe, "serve", "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import httpx

    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc, port
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    sys.exit("agentengine serve did not start")


async def latency(url: str, users: int, rate: int, seconds: float) -> dict[str, float]:
    from websockets.asyncio.client import connect

    prefix = "bench-latency:"
    proc, port = serve(url, prefix)
    names = [f"user{i:04d}" for i in range(users)]
    samples: list[float] = []
    total = int(rate * seconds)
    received = 0
    done = asyncio.Event()

    async def client(user: str, ready: asyncio.Event) -> None:
        nonlocal received
        async with connect(
            f"ws://127.0.0.1:{port}/v1/ws",
            subprotocols=["bearer", token(user)],  # type: ignore[list-item]
            compression=None,
            open_timeout=30,
        ) as ws:
            ready.set()
            async for raw in ws:
                now = time.time()
                frame = json.loads(raw)
                if frame.get("type") == "agent_thinking":
                    samples.append(now - datetime.fromisoformat(frame["ts"]).timestamp())
                    received += 1
                    if received >= total:
                        done.set()

    try:
        readies = [asyncio.Event() for _ in names]
        tasks = [asyncio.create_task(client(u, r)) for u, r in zip(names, readies, strict=True)]
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 60)
        await asyncio.sleep(1.0)  # every stream is open on B
        sink = RedisEventSink(RedisSettings(url=url, key_prefix=prefix))
        tick = 0.01
        per_tick = max(1, int(rate * tick))
        start = time.perf_counter()
        seq = 0
        for step in range(int(seconds / tick)):
            for _ in range(per_tick):
                user = names[seq % users]
                seq += 1
                sink.publish(event(user, seq // users + 1))  # ts: now
            delay = start + (step + 1) * tick - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        await sink.flush()
        await asyncio.wait_for(done.wait(), 30)
        await sink.aclose()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        proc.terminate()
        proc.wait(30)
    ms = sorted(s * 1000 for s in samples)
    return {
        "events": len(ms),
        "p50_ms": statistics.median(ms),
        "p99_ms": ms[int(len(ms) * 0.99) - 1],
        "max_ms": ms[-1],
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc, port = start_redis(Path(tmp))
        url = f"redis://127.0.0.1:{port}/0"
        try:
            t = await throughput(url, args.events, args.users, args.batch)
            print(
                f"throughput: sink {t['sink_events_per_s']:,.0f} events/s, floor "
                f"{t['floor_events_per_s']:,.0f} events/s (redis-py+hiredis pipelined XADD, "
                f"batches of {args.batch}), ratio {t['ratio']:.2f}x (target >= 0.7x)"
            )
            lat = await latency(url, args.users, args.rate, args.seconds)
            print(
                f"latency: {lat['events']} events, {args.users} users at {args.rate}/s, "
                f"publish on A to receipt on B's WebSocket: p50 {lat['p50_ms']:.2f} ms, "
                f"p99 {lat['p99_ms']:.2f} ms, max {lat['max_ms']:.2f} ms (target p99 < 10 ms)"
            )
        finally:
            proc.kill()
            proc.wait(10)


if __name__ == "__main__":
    asyncio.run(main())
