"""The real OpenTelemetry SDK installed for a test, with its in-memory span exporter."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once


def _reset_global_provider() -> None:
    # The API lets a process set its tracer provider once; tests need one per test and none
    # after it (so the rest of the suite runs untraced). This is what the OpenTelemetry
    # project's own test utilities (opentelemetry-test-utils, reset_trace_globals) do.
    trace._TRACER_PROVIDER_SET_ONCE = Once()  # type: ignore[attr-defined]
    trace._TRACER_PROVIDER = None  # type: ignore[attr-defined]


@contextmanager
def sdk_tracing() -> Iterator[InMemorySpanExporter]:
    """An SDK ``TracerProvider`` set globally for the block, exporting to memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    _reset_global_provider()
    trace.set_tracer_provider(provider)
    try:
        yield exporter
    finally:
        provider.shutdown()
        _reset_global_provider()


def by_name(spans: tuple[ReadableSpan, ...] | list[ReadableSpan]) -> dict[str, ReadableSpan]:
    """Spans by name (names must be unique among them)."""
    found = {s.name: s for s in spans}
    assert len(found) == len(spans), [s.name for s in spans]
    return found


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def exception_types(span: ReadableSpan) -> list[Any]:
    return [e.attributes["exception.type"] for e in span.events if e.name == "exception"]
