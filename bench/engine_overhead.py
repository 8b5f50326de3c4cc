"""Engine overhead against a pure-asyncio floor, measured in one process, in one run.

The shape: start, think, one tool call, complete; five events delivered to a per-user
subscriber. The floor does the same with bare asyncio: a per-user semaphore, one awaited tool,
five small dicts into a per-user ``asyncio.Queue`` drained by a subscriber task.

Neither the floor nor the engine suspends during a run (a free slot and a tool that returns at
once never wait), so a sequential loop would starve the subscribers until the very end. Both
loops therefore yield to the event loop every ``--yield-every`` runs (100), so that subscribers
read the events as they come, as in a server, and the engine runs with its default event
retention (10,000 per user) instead of holding every event of the round.

Printed: the ratio engine/floor per run, sequential and with 1,000 concurrent users, and the
memory of 10,000 idle engines (with their contexts). Targets: <= 6x, <= 8 KiB per engine.

Tracing, measured in the same rounds against the same floor: ``tracing API, no SDK`` (the
application imported OpenTelemetry but installed no SDK: must equal the plain engine within
noise) and ``SDK, no-op exporter`` (the OpenTelemetry SDK recording a span per run and per
tool call, handed to an exporter that drops them: the cost of tracing itself).

    uv run python bench/engine_overhead.py [--runs 10000] [--users 1000] [--engines 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable

from agentengine import (
    ExecutionEngineFactory,
    RunContext,
    UserExecutionContext,
    agent,
    hookimpl,
    tool,
)


@tool
async def add(a: int, b: int) -> int:
    """Add."""
    return a + b


@agent(name="shape")
async def shape(run: RunContext, n: int) -> int:
    await run.think("adding")
    return int(await run.call_tool("add", {"a": n, "b": 1}))


class ShapePlugin:
    name = "bench-shape"

    @hookimpl
    def agentengine_register_agents(self, registry):  # type: ignore[no-untyped-def]
        registry.add(shape)

    @hookimpl
    def agentengine_register_tools(self, registry):  # type: ignore[no-untyped-def]
        registry.add(add)


# -- the floor ---------------------------------------------------------------------------------


async def _floor_tool(a: int, b: int) -> int:
    return a + b


class Floor:
    def __init__(self, per_user: int) -> None:
        self.per_user = per_user
        self.semaphores: dict[str, asyncio.Semaphore] = {}
        self.queues: dict[str, asyncio.Queue[dict[str, object]]] = {}

    async def run(self, user: str, n: int) -> int:
        sem = self.semaphores.get(user)
        if sem is None:
            sem = self.semaphores[user] = asyncio.Semaphore(self.per_user)
        queue = self.queues[user]
        async with sem:
            queue.put_nowait({"type": "agent_started", "user": user, "seq": 1})
            queue.put_nowait({"type": "agent_thinking", "user": user, "seq": 2})
            queue.put_nowait({"type": "tool_executing", "user": user, "seq": 3})
            result = await _floor_tool(n, 1)
            queue.put_nowait({"type": "tool_completed", "user": user, "seq": 4})
            queue.put_nowait({"type": "agent_completed", "user": user, "seq": 5})
        return result


async def floor_subscriber(queue: asyncio.Queue[dict[str, object]], expected: int) -> None:
    for _ in range(expected):
        await queue.get()


async def floor_round(
    users: list[str], runs_per_user: int, concurrent: bool, yield_every: int = 100
) -> float:
    floor = Floor(per_user=5)
    floor.queues = {u: asyncio.Queue() for u in users}
    subs = [
        asyncio.create_task(floor_subscriber(floor.queues[u], 5 * runs_per_user)) for u in users
    ]
    start = time.perf_counter()
    if concurrent:
        await asyncio.gather(*(floor.run(u, i) for u in users for i in range(runs_per_user)))
    else:
        for u in users:
            for i in range(runs_per_user):
                await floor.run(u, i)
                if i % yield_every == yield_every - 1:
                    await asyncio.sleep(0)  # let the subscriber read
    await asyncio.gather(*subs)
    return time.perf_counter() - start


# -- the engine --------------------------------------------------------------------------------


async def engine_subscriber(factory: ExecutionEngineFactory, user: str, expected: int) -> None:
    seen = 0
    async for _ in factory.events.subscribe(user):
        seen += 1
        if seen == expected:
            return


def _use_tracing(mode: str) -> None:
    """Set the process's tracer provider for ``mode``: ``off`` (OpenTelemetry not imported,
    or the API's default), ``api`` (imported, no SDK), ``sdk`` (the SDK, a no-op exporter).
    Engines decide on tracing when they are made, so this goes before the factory."""
    if mode == "off":
        if "opentelemetry.trace" in sys.modules:
            _reset_tracer_provider()
        return
    from opentelemetry import trace

    _reset_tracer_provider()
    if mode == "sdk":
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            SimpleSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )

        class Drop(SpanExporter):
            def export(self, spans):  # type: ignore[no-untyped-def]
                return SpanExportResult.SUCCESS

        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(Drop()))
        trace.set_tracer_provider(provider)


def _reset_tracer_provider() -> None:
    # The API sets a provider once per process; the bench switches between rounds (what the
    # OpenTelemetry project's own test utilities do).
    from opentelemetry import trace
    from opentelemetry.util._once import Once

    trace._TRACER_PROVIDER_SET_ONCE = Once()  # type: ignore[attr-defined]
    trace._TRACER_PROVIDER = None  # type: ignore[attr-defined]


async def engine_round(
    users: list[str],
    runs_per_user: int,
    concurrent: bool,
    yield_every: int = 100,
    tracing: str = "off",
) -> float:
    _use_tracing(tracing)
    factory = ExecutionEngineFactory(
        plugins=[ShapePlugin()],
        load_entrypoints=False,
        max_concurrent_per_user=5,
        max_concurrent_runs=100_000,
        idle_ttl=None,
    )
    retention = factory.engine_settings.event_retention
    if 5 * yield_every > retention:
        raise SystemExit(f"--yield-every {yield_every} outruns the event retention ({retention})")
    async with factory:
        engines = {
            u: await factory.create_for_user(UserExecutionContext.for_user(u)) for u in users
        }
        subs = [
            asyncio.create_task(engine_subscriber(factory, u, 5 * runs_per_user)) for u in users
        ]
        await asyncio.sleep(0)
        start = time.perf_counter()
        if concurrent:
            await asyncio.gather(
                *(
                    engines[u].execute_agent("shape", {"n": i})
                    for u in users
                    for i in range(runs_per_user)
                )
            )
        else:
            for u in users:
                engine = engines[u]
                for i in range(runs_per_user):
                    await engine.execute_agent("shape", {"n": i})
                    if i % yield_every == yield_every - 1:
                        await asyncio.sleep(0)  # let the subscriber read
        await asyncio.gather(*subs)
        elapsed = time.perf_counter() - start
        for engine in engines.values():
            await engine.cleanup()
    return elapsed


async def interleaved(
    repeats: int,
    floor: Callable[[], Awaitable[float]],
    engine: Callable[[], Awaitable[float]],
    **variants: Callable[[], Awaitable[float]],
) -> tuple[float, float, dict[str, float]]:
    """Best time of each, alternating floor, engine and the engine's ``variants`` so that a
    burst of load on this shared machine hits all alike."""
    floor_times, engine_times = [], []
    variant_times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        gc.collect()
        floor_times.append(await floor())
        gc.collect()
        engine_times.append(await engine())
        for name, variant in variants.items():
            gc.collect()
            variant_times[name].append(await variant())
    _use_tracing("off")
    best = {name: min(times) for name, times in variant_times.items()}
    return min(floor_times), min(engine_times), best


async def idle_engine_memory(count: int) -> float:
    factory = ExecutionEngineFactory(
        plugins=[ShapePlugin()], load_entrypoints=False, max_engines_per_user=1, idle_ttl=None
    )
    async with factory:
        contexts = [UserExecutionContext.for_user(f"user-{i}") for i in range(8)]  # warm-up
        for ctx in contexts:
            await (await factory.create_for_user(ctx)).cleanup()
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        engines = [
            await factory.create_for_user(UserExecutionContext.for_user(f"idle-{i}"))
            for i in range(count)
        ]
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        per_engine = (after - before) / count
        for engine in engines:
            await engine.cleanup()
    return per_engine


def _mode(runs: int, floor: float, engine: float) -> dict[str, float]:
    """Per-run times of one mode and their ratio."""
    return {
        "floor_us_per_run": round(floor / runs * 1e6, 2),
        "engine_us_per_run": round(engine / runs * 1e6, 2),
        "ratio": round(engine / floor, 2),
        "target": 6.0,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000, help="sequential runs")
    parser.add_argument("--users", type=int, default=1000, help="concurrent users")
    parser.add_argument("--engines", type=int, default=10_000, help="idle engines")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--yield-every", type=int, default=100, help="sequential runs between yields to the loop"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    seq_users = ["alice"]
    many = [f"user-{i}" for i in range(args.users)]
    floor_seq, engine_seq, traced_seq = await interleaved(
        args.repeats,
        lambda: floor_round(seq_users, args.runs, False, args.yield_every),
        lambda: engine_round(seq_users, args.runs, False, args.yield_every),
        api=lambda: engine_round(seq_users, args.runs, False, args.yield_every, "api"),
        sdk=lambda: engine_round(seq_users, args.runs, False, args.yield_every, "sdk"),
    )
    floor_conc, engine_conc, traced_conc = await interleaved(
        args.repeats,
        lambda: floor_round(many, 1, True),
        lambda: engine_round(many, 1, True),
        api=lambda: engine_round(many, 1, True, tracing="api"),
        sdk=lambda: engine_round(many, 1, True, tracing="sdk"),
    )
    per_engine = await idle_engine_memory(args.engines)

    report = {
        "sequential": {
            "runs": args.runs,
            "yield_every": args.yield_every,
            **_mode(args.runs, floor_seq, engine_seq),
        },
        "concurrent": {"users": args.users, **_mode(args.users, floor_conc, engine_conc)},
        "tracing": {
            mode: {
                "sequential": _mode(args.runs, floor_seq, traced_seq[mode]),
                "concurrent": _mode(args.users, floor_conc, traced_conc[mode]),
                "sequential_vs_engine": round(traced_seq[mode] / engine_seq, 2),
                "concurrent_vs_engine": round(traced_conc[mode] / engine_conc, 2),
            }
            for mode in ("api", "sdk")
        },
        "idle_engines": {
            "engines": args.engines,
            "bytes_per_engine": round(per_engine),
            "target_bytes": 8192,
        },
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    s, c, m = report["sequential"], report["concurrent"], report["idle_engines"]
    print(
        f"sequential  ({s['runs']} runs):   floor {s['floor_us_per_run']} us/run, "
        f"engine {s['engine_us_per_run']} us/run, ratio {s['ratio']}x (target <= 6x)"
    )
    print(
        f"concurrent  ({c['users']} users): floor {c['floor_us_per_run']} us/run, "
        f"engine {c['engine_us_per_run']} us/run, ratio {c['ratio']}x (target <= 6x)"
    )
    for mode, label in (("api", "tracing API, no SDK"), ("sdk", "SDK, no-op exporter")):
        t = report["tracing"][mode]
        print(
            f"{label}: sequential {t['sequential']['engine_us_per_run']} us/run, ratio "
            f"{t['sequential']['ratio']}x ({t['sequential_vs_engine']}x the engine); "
            f"concurrent {t['concurrent']['engine_us_per_run']} us/run, ratio "
            f"{t['concurrent']['ratio']}x ({t['concurrent_vs_engine']}x the engine)"
        )
    print(f"idle engines ({m['engines']}): {m['bytes_per_engine']} bytes/engine (target <= 8192)")


if __name__ == "__main__":
    asyncio.run(main())
