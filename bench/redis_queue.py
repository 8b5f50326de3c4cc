"""The run queue (``[redis] queue = true``): what queueing costs a run, and how workers scale.

    uv run python bench/redis_queue.py [--samples 200] [--io-runs 200] [--short-runs 400]

Needs ``redis-server`` on PATH; the bench starts its own on a free 127.0.0.1 port in a
temporary directory (``appendonly yes``, ``appendfsync everysec``), and real ``agentengine
serve`` and ``agentengine worker`` processes on it. Every client is a WebSocket of the run's
user on the serve instance; times are taken in this process.

* **(a) Queue overhead.** ``POST /v1/runs`` of a short agent, one at a time, and the time
  until the run's ``agent_started`` reaches the user's WebSocket: queued (serve queues, one
  worker executes) vs in-process (serve executes; its events on the same Redis). p50/p99.
* **(b) Scaling.** An I/O-bound agent (its tool awaits 50 ms), ``--io-runs`` runs over 20
  users submitted at once, through 1 worker and through 2 workers of ``--io-concurrency``
  each: runs per second from the first ``POST`` to the last ``agent_completed`` received.
  Target: 2 workers at least 1.8x the runs per second of 1.
* **(c) Short runs.** ``--short-runs`` runs of the short agent over 20 users submitted at
  once: runs per second through the queue (2 workers of 10) vs in-process, as a ratio. For
  the queued case, what the runs cost Redis over the burst (``INFO commandstats``, ``cpu``,
  ``memory``): commands, microseconds of the Redis server's CPU and bytes kept per run, so
  about how many runs per second one Redis core carries.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import redis
from redis_sink import SECRET, free_port, start_redis, token
from websockets.asyncio.client import ClientConnection, connect

AGENTENGINE = str(Path(sys.executable).parent / "agentengine")

PLUGIN = textwrap.dedent(
    """
    import asyncio
    from agentengine import RunContext, agent, hookimpl, tool

    @tool(name="io_wait")
    async def io_wait(ms: int) -> int:
        "Wait like an HTTP call would."
        await asyncio.sleep(ms / 1000)
        return ms

    @agent(name="quick")
    async def quick(run: RunContext) -> str:
        await run.think("on it")
        return "done"

    @agent(name="io")
    async def io(run: RunContext, ms: int = 50) -> int:
        return await run.call_tool("io_wait", {"ms": ms})

    class BenchPlugin:
        name = "benchplug"

        @hookimpl
        def agentengine_register_agents(self, registry):
            registry.add(quick)
            registry.add(io)

        @hookimpl
        def agentengine_register_tools(self, registry):
            registry.add(io_wait)

    plugin = BenchPlugin()
    """
)


def environment(url: str, prefix: str, queue: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTENGINE_")}
    return env | {
        "AGENTENGINE_JWT_SECRET": SECRET,
        "AGENTENGINE_REDIS__URL": url,
        "AGENTENGINE_REDIS__KEY_PREFIX": prefix,
        "AGENTENGINE_REDIS__QUEUE": "true" if queue else "false",
        "AGENTENGINE_REDIS__MAX_QUEUED_PER_USER": "10000",
        "AGENTENGINE_ENGINE__MAX_CONCURRENT_PER_USER": "1000",
    }


@contextmanager
def deployment(
    directory: Path, url: str, prefix: str, *, workers: int, concurrency: int = 10
) -> Iterator[int]:
    """One ``agentengine serve`` (queueing if ``workers``, else executing) and ``workers``
    ``agentengine worker`` processes, all ready; yields serve's port."""
    env = environment(url, prefix, queue=workers > 0)
    env["PYTHONPATH"] = str(directory)
    plugin = ["--plugin", "benchplug:plugin", "--log-level", "warning"]
    port = free_port()
    procs = [
        subprocess.Popen(
            [AGENTENGINE, "serve", "--port", str(port), *plugin],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ]
    procs += [
        subprocess.Popen(
            [AGENTENGINE, "worker", "--concurrency", str(concurrency), *plugin],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(workers)
    ]
    client = redis.Redis.from_url(url)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                up = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                up = False
            # Each worker writes its heartbeat when it starts taking runs.
            if up and client.zcard(f"{prefix}workers") >= workers:
                break
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                sys.exit("serve or a worker did not start")
            time.sleep(0.1)
        yield port
    finally:
        client.close()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


class Watcher:
    """A WebSocket per user on serve: when each run's ``agent_started`` and
    ``agent_completed`` arrived (``time.perf_counter``)."""

    def __init__(self, port: int, users: list[str]) -> None:
        self.port = port
        self.users = users
        self.started: dict[str, float] = {}
        self.completed: dict[str, float] = {}
        self.changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Watcher:
        sockets = await asyncio.gather(*(self._connect(u) for u in self.users))
        self._tasks = [asyncio.create_task(self._read(ws)) for ws in sockets]
        await asyncio.sleep(0.5)  # every stream is open
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _connect(self, user: str) -> ClientConnection:
        return await connect(
            f"ws://127.0.0.1:{self.port}/v1/ws",
            subprotocols=["bearer", token(user)],  # type: ignore[list-item]
            compression=None,
            open_timeout=30,
            max_size=None,
        )

    async def _read(self, ws: ClientConnection) -> None:
        async with ws:
            async for raw in ws:
                now = time.perf_counter()
                frame = json.loads(raw)
                kind = frame.get("type")
                if kind == "agent_started":
                    self.started.setdefault(frame["run_id"], now)
                elif kind == "agent_completed":
                    self.completed.setdefault(frame["run_id"], now)
                    self.changed.set()

    async def until_completed(self, run_ids: set[str], timeout: float = 300) -> float:
        """When the last of ``run_ids`` completed."""
        async with asyncio.timeout(timeout):
            while not run_ids <= self.completed.keys():
                self.changed.clear()
                await self.changed.wait()
        return max(self.completed[r] for r in run_ids)


async def post_run(
    client: httpx.AsyncClient, user: str, agent: str, run_input: dict[str, Any]
) -> str:
    r = await client.post(
        "/v1/runs",
        json={"agent": agent, "input": run_input},
        headers={"Authorization": f"Bearer {token(user)}"},
    )
    assert r.status_code == 202, r.text
    return str(r.json()["run_id"])


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, round(len(ordered) * p) - 1)]


async def start_latency(port: int, samples: int) -> dict[str, float]:
    """(a): ``POST`` to ``agent_started`` on the user's WebSocket, one run at a time."""
    users = [f"lat{i}" for i in range(10)]
    found: list[float] = []
    async with (
        Watcher(port, users) as watcher,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client,
    ):
        for i in range(samples + 10):  # the first 10 warm up
            begun = time.perf_counter()
            run_id = await post_run(client, users[i % len(users)], "quick", {})
            await watcher.until_completed({run_id}, timeout=30)
            if i >= 10:
                found.append((watcher.started[run_id] - begun) * 1000)
    return {
        "p50_ms": statistics.median(found),
        "p99_ms": percentile(found, 0.99),
        "max_ms": max(found),
    }


async def burst(port: int, runs: int, agent: str, run_input: dict[str, Any]) -> float:
    """(b), (c): ``runs`` runs over 20 users submitted at once; runs per second from the
    first ``POST`` to the last ``agent_completed``."""
    users = [f"burst{i}" for i in range(20)]
    async with (
        Watcher(port, users) as watcher,
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            timeout=60,
            limits=httpx.Limits(max_connections=20),
        ) as client,
    ):
        begun = time.perf_counter()
        run_ids = await asyncio.gather(
            *(post_run(client, users[i % len(users)], agent, run_input) for i in range(runs))
        )
        ended = await watcher.until_completed(set(run_ids))
    return runs / (ended - begun)


def redis_cpu(client: redis.Redis) -> float:
    """Seconds of CPU the Redis server used so far (user + system)."""
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def redis_cost(url: str, runs: int, before: tuple[float, int]) -> dict[str, float]:
    """Per run since ``redis_mark``: commands executed (those inside scripts included), CPU
    of the Redis server (us) and memory kept (bytes: records, events, indexes)."""
    client = redis.Redis.from_url(url)
    try:
        stats = client.info("commandstats")
        cpu = redis_cpu(client)
        memory = int(client.info("memory")["used_memory"])
    finally:
        client.close()
    return {
        "commands": sum(v["calls"] for v in stats.values()) / runs,
        "usec": (cpu - before[0]) * 1e6 / runs,
        "bytes": (memory - before[1]) / runs,
    }


def redis_mark(url: str) -> tuple[float, int]:
    """Reset ``INFO commandstats``; Redis's CPU seconds and memory now."""
    client = redis.Redis.from_url(url)
    try:
        client.config_resetstat()
        return redis_cpu(client), int(client.info("memory")["used_memory"])
    finally:
        client.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--io-runs", type=int, default=200)
    parser.add_argument("--io-concurrency", type=int, default=2)
    parser.add_argument("--short-runs", type=int, default=400)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        (base / "benchplug.py").write_text(PLUGIN)
        (base / "redis").mkdir()
        proc, redis_port = start_redis(base / "redis")
        url = f"redis://127.0.0.1:{redis_port}/0"
        try:
            with deployment(base, url, "bench-a-local:", workers=0) as port:
                local = await start_latency(port, args.samples)
            with deployment(base, url, "bench-a-queue:", workers=1) as port:
                queued = await start_latency(port, args.samples)
            print(
                f"(a) POST /v1/runs -> agent_started, {args.samples} runs one at a time: "
                f"in-process p50 {local['p50_ms']:.2f} ms, p99 {local['p99_ms']:.2f} ms; "
                f"queued p50 {queued['p50_ms']:.2f} ms, p99 {queued['p99_ms']:.2f} ms"
            )
            rates = {}
            for workers in (1, 2):
                with deployment(
                    base,
                    url,
                    f"bench-b{workers}:",
                    workers=workers,
                    concurrency=args.io_concurrency,
                ) as port:
                    rates[workers] = await burst(port, args.io_runs, "io", {"ms": 50})
            print(
                f"(b) I/O-bound agent (50 ms tool), {args.io_runs} runs, workers of "
                f"{args.io_concurrency}: 1 worker {rates[1]:.1f} runs/s, 2 workers "
                f"{rates[2]:.1f} runs/s, ratio {rates[2] / rates[1]:.2f}x (target >= 1.8x)"
            )
            with deployment(base, url, "bench-c-local:", workers=0) as port:
                in_process = await burst(port, args.short_runs, "quick", {})
            with deployment(base, url, "bench-c-queue:", workers=2) as port:
                mark = redis_mark(url)
                through_queue = await burst(port, args.short_runs, "quick", {})
                cost = redis_cost(url, args.short_runs, mark)
            print(
                f"(c) short runs, {args.short_runs} over 20 users at once: in-process "
                f"{in_process:.0f} runs/s, queued (2 workers of 10) {through_queue:.0f} runs/s, "
                f"ratio {through_queue / in_process:.2f}x; Redis per queued run: "
                f"{cost['commands']:.0f} commands, {cost['usec']:.0f} us of Redis CPU "
                f"(one Redis core: about {1e6 / cost['usec']:,.0f} runs/s), "
                f"{cost['bytes']:,.0f} bytes kept"
            )
        finally:
            proc.kill()
            proc.wait(10)


if __name__ == "__main__":
    asyncio.run(main())
