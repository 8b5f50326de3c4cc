"""Server counters and the Prometheus text exposition of ``GET /metrics``.

No client library: the format is a few lines of text, and the counters are plain integers
updated on the event loop (one thread), so they need no locks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["MEMORY_GAUGES", "QUEUE_FIGURES", "ServerMetrics", "render_prometheus"]

TRANSPORTS = ("ws", "sse")


@dataclass
class ServerMetrics:
    """What the server counts itself (the factory counts runs and plugin errors)."""

    events_delivered: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TRANSPORTS, 0))
    clients_connected: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TRANSPORTS, 0))
    gaps_delivered: int = 0
    slow_client_closes: int = 0
    auth_failures: int = 0
    runs_started: int = 0

    def delivered(self, transport: str, *, gap: bool) -> None:
        """Count one event frame handed to a client over ``transport`` (``ws`` or ``sse``);
        ``gap``: it was an ``events_lost`` frame. The one place deliveries are counted."""
        self.events_delivered[transport] += 1
        if gap:
            self.gaps_delivered += 1


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


#: ``ServerState.memory_figures`` keys: (metric name, help).
MEMORY_GAUGES = {
    "events_retained_bytes": (
        "agentengine_events_retained_bytes",
        "Bytes of events the in-memory event sink retains, as its byte budgets count them.",
    ),
    "finished_runs": ("agentengine_server_finished_runs", "Finished-run records held."),
    "finished_runs_bytes": (
        "agentengine_server_finished_runs_bytes",
        "Bytes of finished-run records held, as finished_runs_max_bytes counts them.",
    ),
    "run_table_users": ("agentengine_server_run_table_users", "Users in the run table."),
    "frame_cache_bytes": (
        "agentengine_server_frame_cache_bytes",
        "Bytes of encoded event frames cached for reuse.",
    ),
    "resident_bytes": ("process_resident_memory_bytes", "Resident memory size in bytes."),
}


_QUEUE_RUNS_HELP = (
    "Runs of the shared queue, by state: queued (waiting for a slot under "
    "max_concurrent_per_user) or running (on a worker whose lease is alive)."
)

#: ``RunRegistry.figures()`` keys (a shared run queue's figures): (metric name, labels, kind,
#: help). Figures of one metric name are one family; a figure not listed here is rendered as
#: the gauge ``agentengine_<key>``.
QUEUE_FIGURES = {
    "queue_depth": (
        "agentengine_queue_depth",
        "",
        "gauge",
        "Queued run wake-ups no worker has taken yet.",
    ),
    "runs_queued": ("agentengine_queue_runs", 'state="queued"', "gauge", _QUEUE_RUNS_HELP),
    "runs_running": ("agentengine_queue_runs", 'state="running"', "gauge", _QUEUE_RUNS_HELP),
    "workers_alive": (
        "agentengine_queue_workers_alive",
        "",
        "gauge",
        "Workers whose heartbeat is within their lease.",
    ),
    "runs_lost_total": (
        "agentengine_queue_runs_lost_total",
        "",
        "counter",
        "Runs ended because their worker was lost (over all processes).",
    ),
}


def render_prometheus(
    metrics: ServerMetrics,
    factory_metrics: dict[str, Any],
    memory: dict[str, float] | None = None,
    figures: dict[str, float] | None = None,
) -> str:
    """The Prometheus text format (version 0.0.4) of the server's and the factory's counters,
    of the ``memory`` figures (``MEMORY_GAUGES``) and of the run registry's ``figures``
    (``QUEUE_FIGURES``)."""
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            # Integers exactly (byte counts run past the 6 digits of "g"), floats as "g".
            text = str(value) if isinstance(value, int) else f"{value:g}"
            lines.append(f"{name}{labels} {text}")

    statuses = ("succeeded", "failed", "timed_out", "cancelled")
    family(
        "agentengine_runs_total",
        "counter",
        "Runs that ended, by status.",
        [(f'{{status="{s}"}}', factory_metrics.get(f"runs_{s}", 0)) for s in statuses],
    )
    family(
        "agentengine_runs_active",
        "gauge",
        "Runs in progress.",
        [("", factory_metrics.get("runs_active", 0))],
    )
    family(
        "agentengine_server_runs_started_total",
        "counter",
        "Runs started through the server.",
        [("", metrics.runs_started)],
    )
    family(
        "agentengine_server_events_delivered_total",
        "counter",
        "Event frames handed to clients, by transport.",
        [(f'{{transport="{t}"}}', n) for t, n in metrics.events_delivered.items()],
    )
    family(
        "agentengine_server_events_lost_frames_total",
        "counter",
        "events_lost frames sent (retention dropped events a client asked for).",
        [("", metrics.gaps_delivered)],
    )
    family(
        "agentengine_server_connected_clients",
        "gauge",
        "Connected event clients, by transport.",
        [(f'{{transport="{t}"}}', n) for t, n in metrics.clients_connected.items()],
    )
    family(
        "agentengine_server_slow_client_closes_total",
        "counter",
        "Connections closed because the client fell too far behind.",
        [("", metrics.slow_client_closes)],
    )
    family(
        "agentengine_server_auth_failures_total",
        "counter",
        "Requests and connections refused for a missing, invalid or expired token.",
        [("", metrics.auth_failures)],
    )
    family(
        "agentengine_engines_active",
        "gauge",
        "Live engines.",
        [("", factory_metrics.get("engines_active", 0))],
    )
    errors: dict[str, int] = dict(factory_metrics.get("errors", {}))
    for name in factory_metrics.get("plugin_errors", {}):
        errors.setdefault(name, 1)
    family(
        "agentengine_plugin_errors_total",
        "counter",
        "Errors attributed to a plugin (load failures, raising observers or extensions).",
        [(f'{{plugin="{_escape(name)}"}}', n) for name, n in sorted(errors.items())],
    )
    for key, value in (memory or {}).items():
        if key in MEMORY_GAUGES:
            name, help_text = MEMORY_GAUGES[key]
            family(name, "gauge", help_text, [("", value)])
    families: dict[str, tuple[str, str, list[tuple[str, float]]]] = {}
    for key, value in (figures or {}).items():
        name, labels, kind, help_text = QUEUE_FIGURES.get(
            key, (f"agentengine_{key}", "", "gauge", f"{key} (from the run registry).")
        )
        entry = families.setdefault(name, (kind, help_text, []))
        entry[2].append((f"{{{labels}}}" if labels else "", value))
    for name, (kind, help_text, samples) in families.items():
        family(name, kind, help_text, samples)
    return "\n".join(lines) + "\n"
