"""``GET /metrics``: the server's and the factory's figures through prometheus-client.

Each app (and each worker) has a ``CollectorRegistry`` of its own, never the library's global
one: a process may build many apps (tests do), and the global registry would refuse their
metrics' names the second time. What it holds:

* Counters and gauges read when scraped (``FactoryCollector``): the factory's runs by status,
  active runs and engines, plugin errors; the server's own counters (``ServerMetrics``:
  plain integers updated on the event loop, so without locks) and memory figures; and any
  mapping of figures folded in with ``FiguresCollector`` (e.g. a run queue's).
* Histograms fed as things happen (``RunMetrics``, a listener of ``factory.timings``): run
  duration by agent and status, tool duration by tool and status, time from accepting a run
  to its first event, time queued runs waited; and the lag from an event's publication to
  its delivery to a client, by transport.

Labels are agent names, tool names, statuses and transports: agents and tools come from the
registries (a bounded set), and a tool name the registries do not know (an agent may ask for
any name) is counted under ``"other"`` once ``MAX_TOOL_LABELS`` names were seen. No user id,
run id or thread id is ever a label or a value here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

__all__ = [
    "CONTENT_TYPE_LATEST",
    "MAX_TOOL_LABELS",
    "MEMORY_GAUGES",
    "QUEUE_FIGURES",
    "FactoryCollector",
    "FiguresCollector",
    "RunMetrics",
    "ServerMetrics",
    "exposition",
    "metrics_registry",
    "serve_metrics",
]

_log = structlog.get_logger("agentengine_server.metrics")

TRANSPORTS = ("ws", "sse")
#: Distinct tool names given labels of their own; later unknown ones count as ``"other"``.
MAX_TOOL_LABELS = 500

#: Buckets (seconds) of the run and tool durations: from a fast tool to a long agent run.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
#: Buckets (seconds) of latencies that should stay small (first event, queue wait, delivery).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


def _histogram(
    name: str,
    help_text: str,
    labels: tuple[str, ...],
    registry: CollectorRegistry,
    buckets: tuple[float, ...],
) -> Histogram:
    return Histogram(name, help_text, labels, registry=registry, buckets=buckets)


@dataclass
class ServerMetrics:
    """What the server counts itself (the factory counts runs and plugin errors), and the
    delivery histogram. ``registry`` is the app's (``metrics_registry``); without one the
    delivery lag is not measured (a ``ServerMetrics`` made alone, in tests of pure logic)."""

    registry: CollectorRegistry | None = None
    events_delivered: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TRANSPORTS, 0))
    clients_connected: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TRANSPORTS, 0))
    gaps_delivered: int = 0
    #: Events clients were told they lost (the ``missed`` of ``events_lost`` frames; a gap of
    #: unknown size counts one).
    events_lost: int = 0
    slow_client_closes: int = 0
    #: New event streams refused, by transport: their user held ``max_connections_per_user``.
    connections_refused: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(TRANSPORTS, 0)
    )
    auth_failures: int = 0
    runs_started: int = 0
    _lag: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.registry is not None:
            lag = _histogram(
                "agentengine_event_delivery_lag_seconds",
                "Seconds from an event's publication (its ts) to its hand-off to a client.",
                ("transport",),
                self.registry,
                LATENCY_BUCKETS,
            )
            self._lag = {t: lag.labels(transport=t) for t in TRANSPORTS}

    def delivered(
        self, transport: str, *, gap: bool, published: float | None = None, missed: int = 0
    ) -> None:
        """Count one event frame handed to a client over ``transport`` (``ws`` or ``sse``);
        ``gap``: it was an ``events_lost`` frame (of ``missed`` events); ``published``: the
        event's time (epoch seconds), for the delivery lag. The one place deliveries are
        counted."""
        self.events_delivered[transport] += 1
        if gap:
            self.gaps_delivered += 1
            self.events_lost += max(missed, 1)
        elif published is not None:
            child = self._lag.get(transport)
            if child is not None:
                # Clocks of two processes when another one published: never below zero.
                child.observe(max(time.time() - published, 0.0))


class RunMetrics:
    """The histograms fed by ``factory.timings`` (a ``TimingListener``): add with
    ``factory.timings.add_listener(RunMetrics(registry, known_tools))``."""

    def __init__(
        self, registry: CollectorRegistry, known_tools: Callable[[str], bool] | None = None
    ) -> None:
        self._known_tools = known_tools
        self._tool_labels: set[str] = set()
        self.runs = _histogram(
            "agentengine_run_duration_seconds",
            "Run duration from agent_started to agent_completed, by agent and status.",
            ("agent", "status"),
            registry,
            DURATION_BUCKETS,
        )
        self.tools = _histogram(
            "agentengine_tool_duration_seconds",
            "Tool call duration, by tool and status (ok, error, timeout, cancelled).",
            ("tool", "status"),
            registry,
            DURATION_BUCKETS,
        )
        self.first = _histogram(
            "agentengine_run_first_event_seconds",
            "Seconds from accepting a run to its first event (agent_started), by agent.",
            ("agent",),
            registry,
            LATENCY_BUCKETS,
        )
        self.queued = _histogram(
            "agentengine_queue_wait_seconds",
            "Seconds a queued run waited before a worker took it, by agent.",
            ("agent",),
            registry,
            LATENCY_BUCKETS,
        )

    def run_finished(self, agent: str, status: str, seconds: float) -> None:
        """``TimingListener.run_finished``."""
        self.runs.labels(agent, status).observe(seconds)

    def tool_finished(self, tool: str, status: str, seconds: float) -> None:
        """``TimingListener.tool_finished``."""
        self.tools.labels(self._tool_label(tool), status).observe(seconds)

    def first_event(self, agent: str, seconds: float) -> None:
        """``TimingListener.first_event``."""
        self.first.labels(agent).observe(max(seconds, 0.0))

    def queue_wait(self, agent: str, seconds: float) -> None:
        """``TimingListener.queue_wait``."""
        self.queued.labels(agent).observe(max(seconds, 0.0))

    def _tool_label(self, tool: str) -> str:
        labels = self._tool_labels
        if tool in labels:
            return tool
        known = self._known_tools
        if len(labels) < MAX_TOOL_LABELS and (known is None or known(tool) or "." in tool):
            # A registered tool, or a plugin's (an MCP server's "server.tool"): bounded by
            # what the plugins offer, and by MAX_TOOL_LABELS whatever they do.
            labels.add(tool)
            return tool
        return "other"


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

_STATUSES = ("succeeded", "failed", "timed_out", "cancelled")


class FactoryCollector(Collector):
    """The factory's figures (and, given ``server``/``memory``, the server's), read when
    scraped. Names are those the hand-written exposition always had."""

    def __init__(
        self,
        factory_metrics: Callable[[], Mapping[str, Any]],
        server: ServerMetrics | None = None,
        memory: Callable[[], Mapping[str, float]] | None = None,
    ) -> None:
        self._factory_metrics = factory_metrics
        self._server = server
        self._memory = memory

    def collect(self) -> Iterator[Metric]:
        """The metric families, as of now."""
        fm = self._factory_metrics()
        runs = CounterMetricFamily(
            "agentengine_runs", "Runs that ended, by status.", labels=("status",)
        )
        for s in _STATUSES:
            runs.add_metric((s,), fm.get(f"runs_{s}", 0))
        yield runs
        yield GaugeMetricFamily(
            "agentengine_runs_active", "Runs in progress.", value=fm.get("runs_active", 0)
        )
        yield GaugeMetricFamily(
            "agentengine_engines_active", "Live engines.", value=fm.get("engines_active", 0)
        )
        errors: dict[str, int] = dict(fm.get("errors", {}))
        for name in fm.get("plugin_errors", {}):
            errors.setdefault(name, 1)
        plugin_errors = CounterMetricFamily(
            "agentengine_plugin_errors",
            "Errors attributed to a plugin (load failures, raising observers or extensions).",
            labels=("plugin",),
        )
        for name, n in sorted(errors.items()):
            plugin_errors.add_metric((name,), n)
        yield plugin_errors
        server = self._server
        if server is not None:
            yield from _server_families(server)
        if self._memory is not None:
            for key, value in self._memory().items():
                if key in MEMORY_GAUGES:
                    name, help_text = MEMORY_GAUGES[key]
                    yield GaugeMetricFamily(name, help_text, value=value)


def _counter(name: str, help_text: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, help_text, value=value)


def _server_families(m: ServerMetrics) -> Iterable[Metric]:
    yield _counter(
        "agentengine_server_runs_started", "Runs started through the server.", m.runs_started
    )
    delivered = CounterMetricFamily(
        "agentengine_server_events_delivered",
        "Event frames handed to clients, by transport.",
        labels=("transport",),
    )
    connected = GaugeMetricFamily(
        "agentengine_server_connected_clients",
        "Connected event clients, by transport.",
        labels=("transport",),
    )
    refused = CounterMetricFamily(
        "agentengine_server_connections_refused",
        "Event streams refused because their user held max_connections_per_user, by transport.",
        labels=("transport",),
    )
    for t in TRANSPORTS:
        delivered.add_metric((t,), m.events_delivered.get(t, 0))
        connected.add_metric((t,), m.clients_connected.get(t, 0))
        refused.add_metric((t,), m.connections_refused.get(t, 0))
    yield delivered
    yield _counter(
        "agentengine_server_events_lost_frames",
        "events_lost frames sent (retention dropped events a client asked for).",
        m.gaps_delivered,
    )
    yield _counter(
        "agentengine_events_lost",
        "Events clients asked for that retention had dropped (told in events_lost frames).",
        m.events_lost,
    )
    yield connected
    yield refused
    yield _counter(
        "agentengine_server_slow_client_closes",
        "Connections closed because the client fell too far behind.",
        m.slow_client_closes,
    )
    yield _counter(
        "agentengine_server_auth_failures",
        "Requests and connections refused for a missing, invalid or expired token.",
        m.auth_failures,
    )


_QUEUE_RUNS_HELP = (
    "Runs of the shared queue, by state: queued (waiting for a slot under "
    "max_concurrent_per_user) or running (on a worker whose lease is alive)."
)

#: ``RunRegistry.figures()`` keys of a shared run queue: (metric name, label (name, value) or
#: None, kind, help). Figures of one metric name are one family. A figure not listed here is
#: shown by ``FiguresCollector``'s general rule.
QUEUE_FIGURES: dict[str, tuple[str, tuple[str, str] | None, str, str]] = {
    "queue_depth": (
        "agentengine_queue_depth",
        None,
        "gauge",
        "Queued run wake-ups no worker has taken yet.",
    ),
    "runs_queued": ("agentengine_queue_runs", ("state", "queued"), "gauge", _QUEUE_RUNS_HELP),
    "runs_running": ("agentengine_queue_runs", ("state", "running"), "gauge", _QUEUE_RUNS_HELP),
    "workers_alive": (
        "agentengine_queue_workers_alive",
        None,
        "gauge",
        "Workers whose heartbeat is within their lease.",
    ),
    "runs_lost_total": (
        "agentengine_queue_runs_lost_total",
        None,
        "counter",
        "Runs ended because their worker was lost (over all processes).",
    ),
}


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class FiguresCollector(Collector):
    """A mapping of figures (name -> number) as metrics. The queue's figures
    (``QUEUE_FIGURES``) have fixed names and labels; any other is named ``prefix + name``: a
    key ending in ``_total`` is a counter, any other a gauge, and a key of a nested mapping
    (``{"runs_waiting": {"queued": 3}}``) a gauge labelled ``{label}`` with the inner keys
    (``label`` is ``"state"``). ``update(mapping)`` before each scrape (the ``/metrics`` route
    awaits ``factory.runs.figures()`` when the run registry has it)."""

    def __init__(self, prefix: str = "agentengine_", help_text: str = "", label: str = "state"):
        self.prefix = prefix
        self.help_text = help_text
        self.label = label
        self._figures: dict[str, Any] = {}

    def update(self, figures: Mapping[str, Any]) -> None:
        """The figures the next scrape shows."""
        self._figures = dict(figures)

    def collect(self) -> Iterator[Metric]:
        """One family per metric name."""
        known: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
        for key, value in sorted(self._figures.items()):
            spec = QUEUE_FIGURES.get(key)
            if spec is not None and _number(value):
                name, label, kind, help_text = spec
                family = known.get(name)
                if family is None:
                    labels = (label[0],) if label else None
                    family = (
                        CounterMetricFamily(name, help_text, labels=labels)
                        if kind == "counter"
                        else GaugeMetricFamily(name, help_text, labels=labels)
                    )
                    known[name] = family
                family.add_metric((label[1],) if label else (), float(value))
                continue
            name = self.prefix + str(key)
            help_text = self.help_text or f"{key} (from the run registry's figures)."
            if isinstance(value, Mapping):
                nested = GaugeMetricFamily(name, help_text, labels=(self.label,))
                for inner, number in sorted(value.items()):
                    if _number(number):
                        nested.add_metric((str(inner),), float(number))
                yield nested
            elif _number(value):
                if name.endswith("_total"):
                    yield CounterMetricFamily(name, help_text, value=value)
                else:
                    yield GaugeMetricFamily(name, help_text, value=value)
        yield from known.values()


def metrics_registry(
    factory: Any,
    server: ServerMetrics | None = None,
    memory: Callable[[], Mapping[str, float]] | None = None,
) -> tuple[CollectorRegistry, FiguresCollector]:
    """A registry of its own with ``factory``'s figures and histograms (its ``timings``
    listened to from now on), and ``server``'s counters when given. Returns it with the
    ``FiguresCollector`` to ``update`` before a scrape."""
    registry = server.registry if server is not None and server.registry is not None else None
    if registry is None:
        registry = CollectorRegistry(auto_describe=False)
    registry.register(FactoryCollector(factory.get_factory_metrics, server, memory))
    figures = FiguresCollector()
    registry.register(figures)
    tools = factory.tools

    def known(name: str) -> bool:
        return tools.get(name) is not None

    factory.timings.add_listener(RunMetrics(registry, known))
    return registry, figures


def exposition(registry: CollectorRegistry) -> bytes:
    """The Prometheus text format (0.0.4) of ``registry``."""
    return generate_latest(registry)


async def serve_metrics(factory: Any, host: str, port: int) -> asyncio.Server:
    """Answer ``GET /metrics`` on ``host:port`` with ``factory``'s metrics (those of
    ``metrics_registry``, and the run registry's ``figures()`` when it has them): what
    ``agentengine worker --metrics-port`` serves, a process without the server's app.
    A minimal HTTP/1.0 responder on asyncio: one request per connection, any other path 404.
    Close the returned server to stop it."""
    registry, figures = metrics_registry(factory)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                request = await reader.readuntil(b"\r\n\r\n")
            method, _, rest = request.partition(b" ")
            path = rest.split(b" ", 1)[0].split(b"?", 1)[0]
            if method != b"GET" or path != b"/metrics":
                status, body, kind = b"404 Not Found", b"not found; GET /metrics\n", b"text/plain"
            else:
                registry_figures = getattr(factory.runs, "figures", None)
                if registry_figures is not None:
                    try:
                        figures.update(await registry_figures())
                    except Exception as exc:  # the other metrics still answer
                        _log.warning("run registry figures unavailable", error=str(exc))
                status, body = b"200 OK", exposition(registry)
                kind = b"text/plain; version=0.0.4; charset=utf-8"
            writer.write(
                b"HTTP/1.0 "
                + status
                + b"\r\nContent-Type: "
                + kind
                + b"\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\nConnection: close\r\n\r\n"
                + body
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass  # a client that sent no request or went away: nothing to answer
        finally:
            writer.close()

    return await asyncio.start_server(answer, host, port)
