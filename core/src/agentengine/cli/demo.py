"""``agentengine demo``: the demo agents for N concurrent users, with an isolation check."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from agentengine.cli.render import event_line
from agentengine.context import UserExecutionContext
from agentengine.events import BaseEvent
from agentengine.runtime.factory import ExecutionEngineFactory
from agentengine.sinks.protocol import EventGap

__all__ = ["print_summary", "run_demo"]

_QUESTIONS = ["isolation", "plugins", "cursors", "how do plugins work", "cursors and isolation"]


async def run_demo(
    factory: ExecutionEngineFactory,
    *,
    users: int = 5,
    runs_per_user: int = 2,
    agent: str = "researcher",
    echo: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run ``agent`` ``runs_per_user`` times for each of ``users`` concurrent users.

    Every user has a subscriber on ``factory.events``; the summary counts events that reached a
    subscriber of another user (must be 0), runs by status, events by type per user, and
    run latency percentiles.
    """
    user_ids = [f"user-{i + 1:02d}" for i in range(users)]
    received: dict[str, list[BaseEvent]] = {u: [] for u in user_ids}
    gaps: Counter[str] = Counter()
    expected_events: Counter[str] = Counter()
    done = asyncio.Event()

    async def subscriber(user_id: str) -> None:
        async for item in factory.events.subscribe(user_id):
            if isinstance(item, EventGap):
                # (missed is None only for a cursor of another sink: never here, counted as 1)
                gaps[user_id] += 1 if item.missed is None else item.missed
                continue
            received[user_id].append(item)
            if echo is not None:
                echo(event_line(item))
            if done.is_set() and len(received[user_id]) >= expected_events[user_id]:
                return

    async def one_user(user_id: str) -> list[tuple[str, float]]:
        outcomes = []
        ctx = UserExecutionContext.for_user(user_id, metadata={"source": "agentengine demo"})
        async with factory.user_execution_engine(ctx) as engine:
            for n in range(runs_per_user):
                question = _QUESTIONS[(user_ids.index(user_id) + n) % len(_QUESTIONS)]
                started = time.perf_counter()
                result = await engine.execute_agent(agent, {"question": question})
                outcomes.append((result.status.value, (time.perf_counter() - started) * 1000))
                expected_events[user_id] += len(result.events)
        return outcomes

    async with factory:
        watchers = [asyncio.create_task(subscriber(u)) for u in user_ids]
        await asyncio.sleep(0)  # subscribers are attached before the first event
        started = time.perf_counter()
        per_user = await asyncio.gather(*(one_user(u) for u in user_ids))
        wall_ms = (time.perf_counter() - started) * 1000
        done.set()
        # Subscribers finish once they have every event of their user's runs.
        for user_id, task in zip(user_ids, watchers, strict=True):
            if len(received[user_id]) >= expected_events[user_id]:
                task.cancel()
        _, pending = await asyncio.wait(watchers, timeout=5.0)
        for task in pending:
            task.cancel()
        metrics = factory.get_factory_metrics()

    statuses = Counter(status for outcomes in per_user for status, _ in outcomes)
    latencies = sorted(ms for outcomes in per_user for _, ms in outcomes)
    wrong = sum(1 for u, events in received.items() for e in events if e.user_id != u)
    missing = sum(max(0, expected_events[u] - len(received[u])) for u in user_ids)
    return {
        "users": users,
        "runs_per_user": runs_per_user,
        "agent": agent,
        "runs": {
            "total": sum(statuses.values()),
            "succeeded": statuses.get("succeeded", 0),
            "failed": statuses.get("failed", 0),
            "timed_out": statuses.get("timed_out", 0),
            "cancelled": statuses.get("cancelled", 0),
        },
        "events_by_user": {
            u: dict(sorted(Counter(e.type for e in received[u]).items())) for u in user_ids
        },
        "isolation": {
            "wrong_user_events": wrong,
            "events_missing": missing,
            "gaps": sum(gaps.values()),
        },
        "latency_ms": {
            "p50": round(statistics.median(latencies), 2) if latencies else 0.0,
            "p95": round(_percentile(latencies, 95), 2) if latencies else 0.0,
            "wall": round(wall_ms, 2),
        },
        "engines": {
            "created": metrics["engines_created"],
            "cleaned": metrics["engines_cleaned"],
        },
    }


def _percentile(sorted_values: list[float], pct: float) -> float:
    if len(sorted_values) == 1:
        return sorted_values[0]
    k = (len(sorted_values) - 1) * pct / 100
    lo, hi = int(k), min(int(k) + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def print_summary(summary: dict[str, Any], echo: Callable[[str], None]) -> None:
    """The human-readable summary of ``run_demo``."""
    runs = summary["runs"]
    iso = summary["isolation"]
    lat = summary["latency_ms"]
    echo("")
    echo(
        f"summary: {summary['users']} users x {summary['runs_per_user']} runs of "
        f"{summary['agent']!r}"
    )
    echo(
        f"  runs: {runs['total']} total, {runs['succeeded']} succeeded, {runs['failed']} failed, "
        f"{runs['timed_out']} timed out, {runs['cancelled']} cancelled"
    )
    echo("  events by type per user:")
    for user, counts in summary["events_by_user"].items():
        echo(f"    {user}: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    verdict = "OK" if iso["wrong_user_events"] == 0 and iso["events_missing"] == 0 else "FAILED"
    echo(
        f"  isolation check: {iso['wrong_user_events']} events reached the wrong user, "
        f"{iso['events_missing']} missing -> {verdict}"
    )
    echo(f"  run latency: p50 {lat['p50']} ms, p95 {lat['p95']} ms (wall {lat['wall']} ms)")
