"""Memory of a real ``agentengine serve`` process under load: how far its RSS grows, and
whether it comes back down once the load stops.

    uv run python bench/server_memory.py                      # the full run (about a minute)
    uv run python bench/server_memory.py --runs 100 --small-runs 2000 --users 100 --settle 2
    uv run python bench/server_memory.py --set engine.event_retention=1000 --json out.json

The server is a subprocess on 127.0.0.1 (a free port), in production mode with a test secret
(this process signs the users' tokens), configured through an ``agentengine.toml`` written to a
temporary directory; ``--config FILE`` uses your file instead and each ``--set
TABLE.KEY=VALUE`` becomes an ``AGENTENGINE_TABLE__KEY`` environment override, so any limit can
be set. Its RSS is sampled from ``/proc/<pid>/status`` (``VmRSS``; ``VmHWM`` is the kernel's
own peak) every ``--interval`` seconds while this process drives it over HTTP:

1. one user, ``--runs`` (1,200) runs of the demo ``echo`` agent with ``--size`` (1 MB) of
   text each, ``--concurrency`` (8) at a time;
2. ``--small-runs`` (20,000) small ``echo`` runs spread over ``--users`` (1,000) users,
   ``--small-concurrency`` (32) at a time.

Each run is started with ``POST /v1/runs`` and waited for with ``GET /v1/runs/{id}`` (one
keep-alive connection per concurrent run). With the default ``[server] max_input_bytes``
(256 KiB) 1 MB inputs are refused with 413 (reported as errors): raise it, and ``[engine]
event_max_bytes`` for the events to carry them uncut, to run phase 1 with 1 MB. At the end of
each phase and after settling, the server's own figures from ``/metrics`` (events retained,
finished-run records, frame cache, in bytes) are reported too. Printed
(and written by ``--json``): RSS at start, the peak, at the end of each phase and after the
load stopped plus ``--settle`` seconds (long enough for a TTL to pass, if one is configured),
with the growth per run of each phase.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt

SECRET = "bench-memory-secret-" + "x" * 40
MB = 1024 * 1024
AGENTENGINE = str(Path(sys.executable).parent / "agentengine")


# -- the server's memory -----------------------------------------------------------------------


def proc_status_kb(pid: int, key: str) -> int:
    """A ``kB`` field of ``/proc/<pid>/status`` (``VmRSS``, ``VmHWM``)."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(f"{key} not in /proc/{pid}/status")


@dataclass
class Sampler:
    """Samples a process's RSS from a thread, labelling each sample with the current phase."""

    pid: int
    interval: float
    phase: str = "start"
    samples: list[tuple[float, str, int]] = field(default_factory=list)  # (t, phase, bytes)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _t0: float = field(default_factory=time.monotonic)

    def rss(self) -> int:
        """The RSS now, in bytes (also recorded as a sample)."""
        value = proc_status_kb(self.pid, "VmRSS") * 1024
        self.samples.append((time.monotonic() - self._t0, self.phase, value))
        return value

    def hwm(self) -> int:
        """The process's peak RSS so far, as the kernel counts it, in bytes."""
        return proc_status_kb(self.pid, "VmHWM") * 1024

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.wait(self.interval):
                try:
                    self.rss()
                except (OSError, KeyError):
                    return  # the process is gone

        self._thread = threading.Thread(target=loop, name="rss-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def peak(self, phase: str | None = None) -> int:
        values = [v for _, p, v in self.samples if phase is None or p == phase]
        return max(values, default=0)


# -- the server --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def default_config(args: argparse.Namespace) -> str:
    """The bench's agentengine.toml: room for its concurrency, and bodies of ``--size``."""
    per_user = max(10, args.concurrency + 2)
    body = max(MB, args.size + 64 * 1024)
    return (
        "[engine]\n"
        f"max_engines_per_user = {per_user}\n"
        f"max_concurrent_per_user = {per_user}\n"
        "\n[server]\n"
        f"max_body_bytes = {body}\n"
    )


def start_server(args: argparse.Namespace, workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    config = workdir / "agentengine.toml"
    if args.config:
        config.write_text(Path(args.config).read_text())
    else:
        config.write_text(default_config(args))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTENGINE_")}
    env["AGENTENGINE_JWT_SECRET"] = SECRET
    env["AGENTENGINE_ENABLE_PLUGINS"] = "demo"  # the echo agent
    for item in args.set:
        key, sep, value = item.partition("=")
        table, dot, name = key.partition(".")
        if not sep or not dot:
            raise SystemExit(f"--set {item!r}: expected TABLE.KEY=VALUE, e.g. engine.idle_ttl=5")
        env[f"AGENTENGINE_{table.upper()}__{name.upper()}"] = value
    port = free_port()
    proc = subprocess.Popen(
        [AGENTENGINE, "serve", "--port", str(port), "--log-level", "warning"],
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL if not args.server_log else None,
        stderr=subprocess.STDOUT if not args.server_log else None,
    )
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with status {proc.returncode} while starting")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc, port
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("the server did not come up within 60 s")
        time.sleep(0.1)


def token(user: str) -> str:
    now = int(time.time())
    return jwt.encode({"sub": user, "iat": now, "exp": now + 3600}, SECRET, algorithm="HS256")


# -- the load ----------------------------------------------------------------------------------


@dataclass
class Counts:
    runs: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    retries: int = 0  # 429 answers (too many runs in flight for the user), retried
    errors: list[str] = field(default_factory=list)


class Connection:
    """A minimal HTTP/1.1 keep-alive client connection.

    httpx's pool costs more client CPU per request than the server spends on it, and more so
    the more connections it holds: with it the bench measured the client. This one does only
    what the bench needs (``Content-Length`` bodies both ways).
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes = b""
    ) -> tuple[int, bytes]:
        """Send one request; (status, body) of the answer."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(
                "127.0.0.1", self.port, limit=1 << 20
            )
        assert self.reader is not None
        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if body:
            lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *fields = head.decode("latin-1").split("\r\n")
        length = 0
        for line in fields:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        parts, remaining = [], length
        while remaining:  # in chunks: readexactly() is slow for megabytes
            chunk = await self.reader.read(remaining)
            if not chunk:
                raise ConnectionError("the server closed the connection mid-answer")
            parts.append(chunk)
            remaining -= len(chunk)
        return int(status_line.split()[1]), b"".join(parts)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def one_run(conn: Connection, headers: dict[str, str], body: bytes, counts: Counts) -> None:
    """Start a run and wait until it ended."""
    while True:
        status, data = await conn.request("POST", "/v1/runs", headers, body)
        if status != 429:
            break
        counts.retries += 1
        await asyncio.sleep(0.01)
    if status != 202:
        counts.errors.append(f"POST {status}: {data[:200]!r}")
        return
    run_id = json.loads(data)["run_id"]
    delay = 0.001
    while True:
        status, data = await conn.request("GET", f"/v1/runs/{run_id}", headers)
        if status != 200:
            counts.errors.append(f"GET {status}: {data[:200]!r}")
            return
        run_status = json.loads(data)["status"]
        if run_status != "running":
            break
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.1)
    counts.runs += 1
    counts.statuses[run_status] = counts.statuses.get(run_status, 0) + 1


async def drive(
    port: int, jobs: list[tuple[str, bytes]], concurrency: int, progress: str
) -> Counts:
    """Run ``jobs`` ((user, request body)) on ``concurrency`` connections."""
    counts = Counts()
    headers = {u: {"Authorization": f"Bearer {token(u)}"} for u in {u for u, _ in jobs}}
    queue = iter(jobs)
    step = max(1, len(jobs) // 10)

    async def worker() -> None:
        conn = Connection(port)
        try:
            for user, body in queue:
                await one_run(conn, headers[user], body, counts)
                if counts.runs % step == 0:
                    print(f"  {progress}: {counts.runs}/{len(jobs)} runs", file=sys.stderr)
        finally:
            conn.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return counts


def echo_body(text: str) -> bytes:
    return json.dumps({"agent": "echo", "input": {"text": text}}).encode()


def big_jobs(runs: int, size: int) -> list[tuple[str, bytes]]:
    """Phase 1: one user, ``runs`` runs of ``size`` characters each (each text distinct)."""
    return [("big-user", echo_body(f"{i:08d}" + "x" * max(0, size - 8))) for i in range(runs)]


def small_jobs(runs: int, users: int) -> list[tuple[str, bytes]]:
    """Phase 2: ``runs`` small runs, round-robin over ``users`` users."""
    names = [f"user-{n:05d}" for n in range(users)]
    return [
        (user, echo_body(f"hello {i} from {user}"))
        for i, user in zip(range(runs), itertools.cycle(names), strict=False)
    ]


# -- the report --------------------------------------------------------------------------------


def mib(value: float) -> str:
    return f"{value / MB:,.1f} MiB"


#: The server's own memory figures in ``GET /metrics`` (gauges, bytes unless said otherwise).
FIGURES = {
    "agentengine_events_retained_bytes": "events",
    "agentengine_server_finished_runs_bytes": "records",
    "agentengine_server_finished_runs": "records_count",
    "agentengine_server_run_table_users": "users_count",
    "agentengine_server_frame_cache_bytes": "frames",
}


async def server_figures(base: str) -> dict[str, float]:
    """What the server says it holds, by bound (see ``FIGURES``)."""
    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(f"{base}/metrics")).text
    figures = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in FIGURES:
            figures[FIGURES[name]] = float(value)
        elif name.startswith("agentengine_runs_total{"):
            figures["runs_" + name.split('"')[1]] = float(value)
    return figures


def held(figures: dict[str, float]) -> str:
    return ", ".join(
        f"{key} {mib(figures[key])}" for key in ("events", "records", "frames") if key in figures
    )


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="agentengine-memory-") as tmp:
        proc, port = start_server(args, Path(tmp))
        base = f"http://127.0.0.1:{port}"
        sampler = Sampler(proc.pid, args.interval)
        report: dict[str, Any] = {
            "config": (Path(tmp) / "agentengine.toml").read_text(),
            "overrides": args.set,
            "phases": {},
        }
        try:
            # Warm up (imports, first engine, first JSON): one small run, then the baseline.
            await drive(port, small_jobs(1, 1), 1, "warm-up")
            await asyncio.sleep(0.5)
            start = sampler.rss()
            report["rss_start"] = start
            print(f"start: {mib(start)}", file=sys.stderr)
            sampler.start()
            phases = [
                ("big", big_jobs(args.runs, args.size), args.concurrency),
                ("small", small_jobs(args.small_runs, args.users), args.small_concurrency),
            ]
            for name, jobs, concurrency in phases:
                if name not in args.phases or not jobs:
                    continue
                before = sampler.rss()
                sampler.phase = name
                began = time.monotonic()
                counts = await drive(port, jobs, concurrency, name)
                seconds = time.monotonic() - began
                end = sampler.rss()
                figures = await server_figures(base)
                report["phases"][name] = {
                    "runs": len(jobs),
                    "users": len({u for u, _ in jobs}),
                    "concurrency": concurrency,
                    "request_bytes": len(jobs[0][1]),
                    "seconds": round(seconds, 1),
                    "statuses": counts.statuses,
                    "retried_429": counts.retries,
                    "errors": counts.errors[:10],
                    "rss_before": before,
                    "rss_peak": max(sampler.peak(name), end),
                    "rss_end": end,
                    "growth_per_run": round((end - before) / len(jobs)),
                    "server_holds": figures,
                }
                print(
                    f"{name}: {len(jobs)} runs in {seconds:.1f} s, RSS {mib(before)} -> "
                    f"{mib(end)} (peak {mib(report['phases'][name]['rss_peak'])}), "
                    f"{(end - before) / len(jobs) / 1024:,.1f} KiB/run; the server holds "
                    f"{held(figures)}",
                    file=sys.stderr,
                )
            sampler.phase = "settle"
            await asyncio.sleep(args.settle)
            settled = sampler.rss()
            report["settle_seconds"] = args.settle
            report["rss_after_settle"] = settled
            report["rss_peak_sampled"] = sampler.peak()
            report["rss_peak_kernel"] = sampler.hwm()
            report["server_holds_after_settle"] = await server_figures(base)
        finally:
            sampler.stop()
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        report["exit_status"] = proc.returncode
        report["samples"] = [
            {"t": round(t, 2), "phase": p, "rss": v} for t, p, v in sampler.samples
        ]
    return report


def print_report(report: dict[str, Any]) -> None:
    start = report["rss_start"]
    print(f"RSS at start:                 {mib(start)}")
    for name, phase in report["phases"].items():
        print(
            f"phase {name:5} ({phase['runs']:,} runs, {phase['users']:,} user(s), "
            f"{phase['request_bytes']:,} B requests, {phase['seconds']} s): "
            f"end {mib(phase['rss_end'])}, peak {mib(phase['rss_peak'])}, "
            f"{phase['growth_per_run'] / 1024:,.2f} KiB/run; statuses {phase['statuses']}; "
            f"the server holds {held(phase['server_holds'])}"
            + (
                f"; {len(phase['errors'])} error(s): {phase['errors'][:3]}"
                if phase["errors"]
                else ""
            )
        )
    print(
        f"RSS after {report['settle_seconds']} s of settling: {mib(report['rss_after_settle'])}; "
        f"the server holds {held(report['server_holds_after_settle'])}"
    )
    print(
        f"peak RSS: {mib(report['rss_peak_sampled'])} sampled, "
        f"{mib(report['rss_peak_kernel'])} (VmHWM)"
    )
    print(f"server exit status: {report['exit_status']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1200, help="phase 1: runs of one user")
    parser.add_argument("--size", type=int, default=1_000_000, help="phase 1: characters per run")
    parser.add_argument("--concurrency", type=int, default=8, help="phase 1: runs at a time")
    parser.add_argument("--small-runs", type=int, default=20_000, help="phase 2: small runs")
    parser.add_argument("--users", type=int, default=1000, help="phase 2: users")
    parser.add_argument("--small-concurrency", type=int, default=32, help="phase 2: at a time")
    parser.add_argument(
        "--phases", default="big,small", help="comma-separated phases to run (big, small)"
    )
    parser.add_argument(
        "--settle", type=float, default=10.0, help="seconds to wait after the load (a TTL)"
    )
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between samples")
    parser.add_argument("--config", help="an agentengine.toml to serve with (else the bench's)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="TABLE.KEY=VALUE",
        help="a configuration override (repeatable), e.g. --set engine.idle_ttl=5",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the report (with samples)")
    parser.add_argument("--server-log", action="store_true", help="show the server's output")
    args = parser.parse_args()
    args.phases = {p.strip() for p in args.phases.split(",") if p.strip()}
    if not os.path.exists("/proc/self/status"):
        raise SystemExit("this bench reads /proc/<pid>/status: run it on Linux")
    report = asyncio.run(bench(args))
    print_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
