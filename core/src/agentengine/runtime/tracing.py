"""Spans of runs and tool calls, through the OpenTelemetry API.

An engine gets a ``RunTracer`` when it is made if the application installed an OpenTelemetry
SDK then (``agentengine.telemetry.tracing_enabled``); otherwise its ``_tracer`` is None and
the run path tests that and nothing else. This module is imported only in the first case, so
without an SDK OpenTelemetry is not even imported by the engine.

Each run is one span (``invoke_agent <agent>``), started as the run is accepted (before its
``agent_started``) under the context current then (the HTTP request's span, a client's
``traceparent``, or the context a worker attached from the queued run), and current while the
run executes, so that spans and log lines made during the run nest under it. Each tool call
is a child span (``execute_tool <tool>``), current while the tool executes (an MCP tool's
session spans nest under it). Attributes follow the OpenTelemetry GenAI conventions
(``gen_ai.*``) plus ``agentengine.*``; the user id only with ``[engine] trace_user_ids``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from opentelemetry import context as otel_context, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

__all__ = ["RunTrace", "RunTracer", "run_tracer"]

_ERROR_STATUSES = frozenset({"failed", "timed_out", "error", "timeout"})


def _version() -> str:
    try:
        return version("agentengine-core")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree
        return "0"


class RunTracer:
    """Makes the spans of one engine's runs (see the module docstring)."""

    __slots__ = ("tracer", "user_ids")

    def __init__(self, tracer: trace.Tracer, user_ids: bool) -> None:
        self.tracer = tracer
        self.user_ids = user_ids

    def start_run(self, agent: str, run_id: str, thread_id: str, user_id: str) -> RunTrace:
        """The span of a run, started now under the current context."""
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": agent,
            "agentengine.run_id": run_id,
            "agentengine.thread_id": thread_id,
        }
        if self.user_ids:
            attributes["enduser.id"] = user_id
        span = self.tracer.start_span(
            f"invoke_agent {agent}", kind=SpanKind.INTERNAL, attributes=attributes
        )
        return RunTrace(self.tracer, span)


class RunTrace:
    """The spans of one run: its own and those of its tool calls in flight."""

    __slots__ = ("_tools", "span", "tracer")

    def __init__(self, tracer: trace.Tracer, span: trace.Span) -> None:
        self.tracer = tracer
        self.span = span
        self._tools: dict[str, tuple[trace.Span, object]] = {}

    def attach(self) -> object:
        """Make the run's span current (in the run's task); returns the token for ``detach``."""
        return otel_context.attach(trace.set_span_in_context(self.span))

    @staticmethod
    def detach(token: object) -> None:
        """Undo ``attach``."""
        otel_context.detach(token)  # type: ignore[arg-type]

    def start_tool(self, call_id: str, tool: str) -> None:
        """Start the span of a tool call, a child of the run's, and make it current (in the
        calling task: ``finish_tool``, called in the same task, restores the context)."""
        span = self.tracer.start_span(
            f"execute_tool {tool}",
            context=trace.set_span_in_context(self.span),
            kind=SpanKind.INTERNAL,
            attributes={
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": tool,
                "gen_ai.tool.call.id": call_id,
            },
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        self._tools[call_id] = (span, token)

    def finish_tool(
        self,
        call_id: str,
        status: str,
        error: str | None,
        error_type: str | None,
        duration_ms: float,
    ) -> None:
        """End the span of a tool call: status, duration, and the error with its type."""
        entry = self._tools.pop(call_id, None)
        if entry is None:
            return
        span, token = entry
        otel_context.detach(token)  # type: ignore[arg-type]
        span.set_attribute("agentengine.tool.status", status)
        span.set_attribute("agentengine.tool.duration_ms", duration_ms)
        _end(span, status, error, error_type or ("TimeoutError" if status == "timeout" else None))

    def finish(
        self, status: str, event_count: int, error: str | None, error_type: str | None
    ) -> None:
        """End the run's span (and any tool span its end cut short)."""
        for call_id in list(self._tools):
            span, _token = self._tools.pop(call_id)
            span.set_attribute("agentengine.tool.status", "cancelled")
            span.end()
        span = self.span
        span.set_attribute("agentengine.status", status)
        span.set_attribute("agentengine.event_count", event_count)
        _end(span, status, error, error_type)


def _end(span: trace.Span, status: str, error: str | None, error_type: str | None) -> None:
    if status in _ERROR_STATUSES:
        kind = error_type or "Error"
        # What Span.record_exception records, from the run's or call's own description
        # (the exception object itself is gone, or was never raised: an unknown tool).
        span.add_event(
            "exception",
            {"exception.type": kind, "exception.message": error or ""},
        )
        span.set_attribute("error.type", kind)
        span.set_status(Status(StatusCode.ERROR, error or kind))
    span.end()


_TRACERS: dict[bool, tuple[Any, RunTracer]] = {}


def run_tracer(user_ids: bool) -> RunTracer:
    """The ``RunTracer`` of the tracer provider installed now (made again when the
    application replaces the provider)."""
    provider = trace.get_tracer_provider()
    found = _TRACERS.get(user_ids)
    if found is None or found[0] is not provider:
        found = _TRACERS[user_ids] = (
            provider,
            RunTracer(provider.get_tracer("agentengine", _version()), user_ids),
        )
    return found[1]
