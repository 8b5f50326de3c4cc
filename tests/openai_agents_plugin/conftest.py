"""The openai-agents adapter's tests: no network (scripted models, tracing off), real engine."""

from __future__ import annotations

from agents import set_tracing_disabled

# The SDK exports traces to OpenAI by default; the tests send nothing anywhere.
set_tracing_disabled(True)
