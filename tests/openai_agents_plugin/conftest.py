"""The openai-agents adapter's tests: no network (scripted models, tracing off), real engine."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from agents import set_tracing_disabled


@pytest.fixture(autouse=True)
def _no_trace_export() -> Iterator[None]:
    # The SDK exports traces to OpenAI by default; the tests send nothing anywhere.
    set_tracing_disabled(True)
    yield
