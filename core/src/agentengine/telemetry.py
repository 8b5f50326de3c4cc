"""Telemetry hooks of the core: run and tool timings for metrics, and trace context.

Nothing here imports a metrics library, and only ``install_sdk`` (for applications: what
``agentengine serve --otel`` calls) the OpenTelemetry SDK. Two mechanisms:

* ``RunTimings`` (``factory.timings``): the factory's engines report each finished run and
  tool call (name, status, seconds); whoever accepts runs reports the time from accepting
  one to its first event (the server for runs it executes, the worker for queued ones) and
  the time a queued run waited; a metrics exporter (the server's ``/metrics``) subscribes
  with ``add_listener``. With no listener the run path tests one attribute
  against None: nothing is computed or called.
* Trace context through the OpenTelemetry **API**. The library never configures tracing:
  spans are recorded only once the application installed an SDK (a ``TracerProvider`` set
  with ``opentelemetry.trace.set_tracer_provider``, as ``agentengine serve --otel`` does).
  Until then ``tracing_enabled()`` is False and nothing of OpenTelemetry is even imported
  here (an application that set a provider has imported it already), so ``import
  agentengine`` and a run cost what they cost without it. ``inject_trace_context`` and
  ``attached_trace_context`` carry a trace across processes (the W3C ``traceparent`` in a
  queued run), ``current_trace_ids`` gives the log lines of a run their trace and span ids,
  ``traced`` and ``annotate_span`` are for plugins' own spans and attributes.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

import structlog

__all__ = [
    "RunTimings",
    "TimingListener",
    "annotate_span",
    "attached_trace_context",
    "configure_tracing",
    "current_trace_ids",
    "inject_trace_context",
    "install_sdk",
    "traced",
    "tracing_enabled",
]


class TimingListener(Protocol):
    """What ``RunTimings.add_listener`` takes: any of these methods (those missing are not
    called). Called on the event loop, in the run's task: keep them quick and non-blocking.
    Names are agent and tool names (from the registries: a bounded set); never user ids."""

    def run_finished(self, agent: str, status: str, seconds: float) -> None:
        """A run ended with ``status`` (``succeeded``, ``failed``, ``timed_out``,
        ``cancelled``) after ``seconds`` (from its ``agent_started`` to its end)."""

    def tool_finished(self, tool: str, status: str, seconds: float) -> None:
        """A tool call ended with ``status`` (``ok``, ``error``, ``timeout``, ``cancelled``)."""

    def first_event(self, agent: str, seconds: float) -> None:
        """A run's first event went out ``seconds`` after the run was accepted (by
        ``POST /v1/runs`` or a WebSocket ``run`` frame; on another instance for a queued run)."""

    def queue_wait(self, agent: str, seconds: float) -> None:
        """A queued run was taken by a worker ``seconds`` after it was accepted."""


_log = structlog.get_logger("agentengine.telemetry")
_KINDS = ("run_finished", "tool_finished", "first_event", "queue_wait")


def _fan_out(calls: list[Callable[..., None]]) -> Callable[..., None] | None:
    if not calls:
        return None

    def every(*args: Any) -> None:
        # A listener is metrics code: whatever it raises must not reach the run (whose
        # terminal event, or tool_completed, is still to come).
        for call in calls:
            try:
                call(*args)
            except Exception as exc:
                _log.error("timing listener raised; skipped", listener=repr(call), error=repr(exc))

    return every


class RunTimings:
    """The timings of a factory's runs and tool calls, for whoever listens (metrics).

    Each attribute (``run_finished``, ``tool_finished``, ``first_event``, ``queue_wait``) is
    None while no listener has that method, else the one callable to call: the engines test
    it against None, so a factory nobody listens to pays nothing per run. A listener that
    raises is logged and skipped: it never fails the run it measures.
    """

    __slots__ = ("_listeners", *_KINDS)

    run_finished: Callable[[str, str, float], None] | None
    tool_finished: Callable[[str, str, float], None] | None
    first_event: Callable[[str, float], None] | None
    queue_wait: Callable[[str, float], None] | None

    def __init__(self) -> None:
        self._listeners: list[Any] = []
        self._rebuild()

    def add_listener(self, listener: TimingListener | Any) -> Callable[[], None]:
        """Call ``listener``'s methods from now on; returns the function that removes it."""
        self._listeners.append(listener)
        self._rebuild()

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)
                self._rebuild()

        return remove

    @property
    def listening(self) -> bool:
        """True while any listener is added."""
        return bool(self._listeners)

    def _rebuild(self) -> None:
        for kind in _KINDS:
            calls = [getattr(x, kind) for x in self._listeners if callable(getattr(x, kind, None))]
            setattr(self, kind, _fan_out(calls))


# -- trace context ------------------------------------------------------------------------------


def tracing_enabled() -> bool:
    """True when the application installed an OpenTelemetry SDK (set a tracer provider other
    than the API's default proxy or its no-op one).

    Cheap and import-free when OpenTelemetry was never imported: a provider can only have
    been set by code that imported ``opentelemetry.trace``."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return False
    provider = trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def inject_trace_context() -> dict[str, str]:
    """The current trace context as W3C headers (``traceparent``, ``tracestate``): what a
    message that another process handles carries so that its spans join this trace. Empty
    when no trace is active (or OpenTelemetry was never imported)."""
    if "opentelemetry.trace" not in sys.modules:
        return {}
    from opentelemetry import propagate, trace

    if not trace.get_current_span().get_span_context().is_valid:
        return {}
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


@contextlib.contextmanager
def attached_trace_context(
    carrier: Mapping[str, Any] | None, *, unless_active: bool = False
) -> Iterator[None]:
    """Within the block, the trace context ``carrier`` (``inject_trace_context``'s headers)
    is the current one, so spans started in it (and tasks created in it) continue that trace.
    Does nothing for an empty or malformed carrier, or while tracing is off; nor, with
    ``unless_active``, when a span is current already (an HTTP request's, made by the ASGI
    instrumentation from the same headers)."""
    if not carrier or not isinstance(carrier, Mapping) or not tracing_enabled():
        yield
        return
    from opentelemetry import context, propagate, trace

    if unless_active and trace.get_current_span().get_span_context().is_valid:
        yield
        return

    headers = {str(k): str(v) for k, v in carrier.items() if isinstance(v, str)}
    token = context.attach(propagate.extract(headers))
    try:
        yield
    finally:
        context.detach(token)


def current_trace_ids() -> tuple[str, str] | None:
    """``(trace_id, span_id)`` of the current span as 32 and 16 hex digits, or None when no
    recording trace is active."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


@contextlib.contextmanager
def traced(name: str, attributes: Mapping[str, Any] | None = None) -> Iterator[Any]:
    """A span named ``name``, current within the block (a child of the current span), that
    records an exception leaving the block with its type and marks the span failed; the
    span itself is yielded. While tracing is off, nothing but that test happens (None is
    yielded). For plugins' own spans (an MCP session opening, say)."""
    if not tracing_enabled():
        yield None
        return
    from opentelemetry import trace

    tracer = trace.get_tracer("agentengine")
    with tracer.start_as_current_span(name, attributes=dict(attributes or {})) as span:
        yield span


def annotate_span(attributes: Mapping[str, Any]) -> None:
    """Set ``attributes`` on the current span (a tool call's, inside a tool), if tracing."""
    if tracing_enabled():
        from opentelemetry import trace

        trace.get_current_span().set_attributes(dict(attributes))


# -- installing the SDK (applications: agentengine serve --otel, agentengine worker --otel) ------

_OTEL_EXTRA = "pip install 'agentengine-core[otel]' (or 'agentengine-server[otel]')"


def install_sdk(service_name: str) -> Any:
    """Install the OpenTelemetry SDK as the process's tracer provider, exporting spans in
    batches with the OTLP/HTTP exporter. Everything else comes from the standard variables:
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (default
    ``http://localhost:4318``), ``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_SERVICE_NAME`` (else
    ``service_name``), ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``,
    ``OTEL_BSP_SCHEDULE_DELAY``... Spans still buffered are sent at exit. Returns the
    provider. Raises ``ConfigError`` when the SDK or the exporter is not installed."""
    import os

    from agentengine.errors import ConfigError

    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise ConfigError(
            f"tracing with OpenTelemetry needs its SDK and OTLP exporter ({exc}): {_OTEL_EXTRA}"
        ) from None
    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": service_name}
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider


def configure_tracing(settings: Any, *, force: bool = False, service_name: str) -> bool:
    """Install the SDK (``install_sdk``) when ``force`` (``--otel``) or ``[otel] enabled``
    (``AGENTENGINE_OTEL__ENABLED=true``) in ``settings`` (the factory's); True when it did."""
    from agentengine.config import OtelSettings

    otel = settings.model("otel", OtelSettings)
    if not (force or otel.enabled):
        return False
    install_sdk(otel.service_name or service_name)
    return True
