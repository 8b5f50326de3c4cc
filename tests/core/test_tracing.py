"""Spans of runs and tool calls with the real OpenTelemetry SDK and its in-memory exporter;
log lines of a traced run carry its trace and span ids; without an SDK nothing is traced."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
from typing import Any

import pytest
import structlog
from agentengine import (
    ExecutionEngineFactory,
    RunContext,
    ToolError,
    UserExecutionContext,
    agent,
    hookimpl,
    tool,
)
from agentengine.log import add_trace_ids, configure
from opentelemetry import trace
from tracing_helpers import by_name, exception_types, parent_id, sdk_tracing

USER = "user-zq91-tracing"
_log = structlog.get_logger("tests.tracing")


@tool
async def add(a: int, b: int) -> int:
    """Add."""
    _log.info("adding inside a tool")
    return a + b


@tool
async def explode() -> int:
    """Always fails."""
    raise ValueError("boom")


@tool
async def slow(seconds: float) -> str:
    """Sleep."""
    await asyncio.sleep(seconds)
    return "late"


@agent(name="twotools")
async def twotools(run: RunContext, n: int) -> int:
    _log.info("inside the run")
    first = await run.call_tool("add", {"a": n, "b": 1})
    return int(await run.call_tool("add", {"a": first, "b": 1}))


@agent(name="failing")
async def failing(run: RunContext, swallow: bool) -> str:
    try:
        await run.call_tool("explode", {})
    except ToolError:
        if not swallow:
            raise
    return "went on"


@agent(name="sleepy")
async def sleepy(run: RunContext, seconds: float) -> str:
    return str(await run.call_tool("slow", {"seconds": seconds}))


class TracedPlugin:
    name = "traced"

    @hookimpl
    def agentengine_register_agents(self, registry: Any) -> None:
        for a in (twotools, failing, sleepy):
            registry.add(a)

    @hookimpl
    def agentengine_register_tools(self, registry: Any) -> None:
        for t in (add, explode, slow):
            registry.add(t)


def ctx() -> UserExecutionContext:
    return UserExecutionContext.for_user(USER)


def factory(**kwargs: Any) -> ExecutionEngineFactory:
    return ExecutionEngineFactory(plugins=[TracedPlugin()], load_entrypoints=False, **kwargs)


async def test_a_run_with_two_tool_calls_is_a_span_with_two_children() -> None:
    with sdk_tracing() as exporter:
        async with (
            factory() as f,
            f.user_execution_engine(UserExecutionContext.for_user(USER)) as e,
        ):
            result = await e.execute_agent("twotools", {"n": 1})
        spans = exporter.get_finished_spans()
    assert result.status == "succeeded"
    assert [s.name for s in spans] == [
        "execute_tool add",
        "execute_tool add",
        "invoke_agent twotools",
    ]
    run_span = spans[2]
    assert run_span.parent is None
    assert run_span.attributes is not None
    assert run_span.attributes["gen_ai.agent.name"] == "twotools"
    assert run_span.attributes["agentengine.run_id"] == result.run_id
    assert run_span.attributes["agentengine.thread_id"]
    assert run_span.attributes["agentengine.status"] == "succeeded"
    assert run_span.attributes["agentengine.event_count"] == len(result.events) == 6
    assert run_span.status.status_code == trace.StatusCode.UNSET
    call_ids = []
    for tool_span in spans[:2]:
        assert parent_id(tool_span) == run_span.context.span_id
        assert tool_span.context.trace_id == run_span.context.trace_id
        assert tool_span.attributes is not None
        assert tool_span.attributes["gen_ai.tool.name"] == "add"
        assert tool_span.attributes["agentengine.tool.status"] == "ok"
        assert tool_span.attributes["agentengine.tool.duration_ms"] >= 0
        call_ids.append(tool_span.attributes["gen_ai.tool.call.id"])
    completed = [ev for ev in result.events if ev.type == "tool_completed"]
    assert call_ids == [ev.tool_call_id for ev in completed]  # type: ignore[attr-defined]
    # No user id on any span unless configured.
    for span in spans:
        assert USER not in json.dumps(dict(span.attributes or {}))


async def test_user_ids_on_spans_only_when_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTENGINE_ENGINE__TRACE_USER_IDS", "true")
    with sdk_tracing() as exporter:
        async with (
            factory() as f,
            f.user_execution_engine(UserExecutionContext.for_user(USER)) as e,
        ):
            await e.execute_agent("twotools", {"n": 1})
        run_span = by_name(exporter.get_finished_spans()[2:])["invoke_agent twotools"]
    assert run_span.attributes is not None
    assert run_span.attributes["enduser.id"] == USER


async def test_a_failing_tool_records_its_exception_and_a_failed_run_its_own() -> None:
    with sdk_tracing() as exporter:
        async with (
            factory() as f,
            f.user_execution_engine(UserExecutionContext.for_user(USER)) as e,
        ):
            went_on = await e.execute_agent("failing", {"swallow": True})
            failed = await e.execute_agent("failing", {"swallow": False})
        spans = exporter.get_finished_spans()
    assert (went_on.status, failed.status) == ("succeeded", "failed")
    tool_ok_run, run_ok, tool_failed_run, run_failed = spans
    for tool_span in (tool_ok_run, tool_failed_run):
        assert tool_span.name == "execute_tool explode"
        assert tool_span.status.status_code == trace.StatusCode.ERROR
        assert exception_types(tool_span) == ["ValueError"]
        assert tool_span.attributes is not None
        assert tool_span.attributes["agentengine.tool.status"] == "error"
        assert tool_span.attributes["error.type"] == "ValueError"
    # The agent caught the ToolError: its run is fine.
    assert run_ok.status.status_code == trace.StatusCode.UNSET
    assert exception_types(run_ok) == []
    # The agent let it out: the run failed with that type.
    assert run_failed.status.status_code == trace.StatusCode.ERROR
    assert exception_types(run_failed) == ["ToolError"]
    assert run_failed.attributes is not None
    assert run_failed.attributes["agentengine.status"] == "failed"
    assert parent_id(tool_failed_run) == run_failed.context.span_id


async def test_a_cancelled_run_ends_its_span_and_the_tool_call_in_flight() -> None:
    with sdk_tracing() as exporter:
        async with (
            factory() as f,
            f.user_execution_engine(UserExecutionContext.for_user(USER)) as e,
        ):
            handle = await e.start_run("sleepy", {"seconds": 30})
            for _ in range(200):
                if any(ev.type == "tool_executing" for ev in handle._run.events):
                    break
                await asyncio.sleep(0.01)
            await handle.cancel()
            result = await handle.result()
        spans = by_name(exporter.get_finished_spans())
    assert result.status == "cancelled"
    run_span, tool_span = spans["invoke_agent sleepy"], spans["execute_tool slow"]
    assert parent_id(tool_span) == run_span.context.span_id
    assert tool_span.attributes is not None
    assert tool_span.attributes["agentengine.tool.status"] == "cancelled"
    assert run_span.attributes is not None
    assert run_span.attributes["agentengine.status"] == "cancelled"
    # A cancel asked for is not an error.
    assert run_span.status.status_code == trace.StatusCode.UNSET
    assert tool_span.status.status_code == trace.StatusCode.UNSET


async def test_a_timed_out_run_is_an_error_of_type_timeout() -> None:
    with sdk_tracing() as exporter:
        async with (
            factory() as f,
            f.user_execution_engine(UserExecutionContext.for_user(USER)) as e,
        ):
            result = await e.execute_agent("sleepy", {"seconds": 30}, timeout=0.2)
        spans = by_name(exporter.get_finished_spans())
    assert result.status == "timed_out"
    run_span = spans["invoke_agent sleepy"]
    assert run_span.status.status_code == trace.StatusCode.ERROR
    assert exception_types(run_span) == ["TimeoutError"]
    assert run_span.attributes is not None
    assert run_span.attributes["agentengine.status"] == "timed_out"
    assert spans["execute_tool slow"].end_time is not None


async def test_the_run_span_is_a_child_of_the_callers_span() -> None:
    with sdk_tracing() as exporter:
        tracer = trace.get_tracer("tests")
        async with (
            factory() as f,
            f.user_execution_engine(UserExecutionContext.for_user(USER)) as e,
        ):
            with tracer.start_as_current_span("request") as outer:
                handle = await e.start_run("twotools", {"n": 1})  # its own task
                await handle.result()
        spans = by_name(exporter.get_finished_spans()[2:])
    run_span = spans["invoke_agent twotools"]
    assert parent_id(run_span) == outer.get_span_context().span_id
    assert run_span.context.trace_id == outer.get_span_context().trace_id


async def test_log_lines_of_a_traced_run_carry_its_trace_and_span_ids() -> None:
    lines: list[dict[str, Any]] = []

    def keep(logger: Any, method: str, event_dict: Any) -> Any:
        lines.append(dict(event_dict))
        raise structlog.DropEvent

    old = structlog.get_config()
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, add_trace_ids, keep],
        cache_logger_on_first_use=False,
    )
    try:
        with sdk_tracing() as exporter:
            async with (
                factory() as f,
                f.user_execution_engine(UserExecutionContext.for_user(USER)) as e,
            ):
                await e.execute_agent("twotools", {"n": 1})
            _log.info("outside any run")
            spans = exporter.get_finished_spans()
    finally:
        structlog.configure(**old)
    run_span = spans[2]
    trace_id = format(run_span.context.trace_id, "032x")
    in_run = next(x for x in lines if x["event"] == "inside the run")
    assert in_run["trace_id"] == trace_id
    assert in_run["span_id"] == format(run_span.context.span_id, "016x")
    in_tool = [x for x in lines if x["event"] == "adding inside a tool"]
    assert [x["span_id"] for x in in_tool] == [format(s.context.span_id, "016x") for s in spans[:2]]
    outside = next(x for x in lines if x["event"] == "outside any run")
    assert "trace_id" not in outside


async def test_the_logging_serve_and_worker_configure_joins_lines_to_the_trace() -> None:
    """``agentengine.log.configure()`` (what ``serve`` and ``worker`` call) writes the run's
    ``trace_id`` and ``span_id`` on its JSON lines, not only a hand-made processor chain."""
    out = io.StringIO()
    old = structlog.get_config()
    configure(json=True, stream=out)
    try:
        with sdk_tracing() as exporter:
            async with (
                factory() as f,
                f.user_execution_engine(UserExecutionContext.for_user(USER)) as e,
            ):
                await e.execute_agent("twotools", {"n": 1})
            spans = by_name(exporter.get_finished_spans()[2:])
    finally:
        structlog.configure(**old)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    (in_run,) = [x for x in lines if x["event"] == "inside the run"]
    run_span = spans["invoke_agent twotools"]
    assert in_run["trace_id"] == format(run_span.context.trace_id, "032x")
    assert in_run["span_id"] == format(run_span.context.span_id, "016x")


def test_without_an_sdk_nothing_of_opentelemetry_is_imported_by_a_run() -> None:
    code = """
import asyncio, sys
from agentengine import ExecutionEngineFactory, UserExecutionContext, agent, hookimpl

@agent(name="quiet")
async def quiet(run, n: int) -> int:
    await run.think("hm")
    return n

class P:
    @hookimpl
    def agentengine_register_agents(self, registry):
        registry.add(quiet)

async def main():
    async with ExecutionEngineFactory(plugins=[P()], load_entrypoints=False) as f:
        async with f.user_execution_engine(UserExecutionContext.for_user("u-1")) as e:
            assert (await e.execute_agent("quiet", {"n": 1})).status == "succeeded"
    print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))

asyncio.run(main())
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout
