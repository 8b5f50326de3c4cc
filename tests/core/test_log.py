"""Logging: run ids bound on every line of a run, only that run's; secrets redacted."""

from __future__ import annotations

import asyncio
import importlib
import io
import json
import sys

import agentengine.log
import pytest
import structlog
from agentengine import ExecutionEngineFactory, RunContext, UserExecutionContext, agent, hookimpl
from agentengine.log import REDACTED, configure, redact_secrets
from structlog.testing import capture_logs

log = structlog.get_logger("test-agent")


@agent(name="chatty")
async def chatty(run: RunContext, n: int) -> None:
    for step in range(3):
        log.info("working", step=step, n=n)
        await asyncio.sleep(0.001 * ((n + step) % 3))


class ChattyPlugin:
    name = "chatty"

    @hookimpl
    def agentengine_register_agents(self, registry):  # type: ignore[no-untyped-def]
        registry.add(chatty)


async def test_every_line_of_a_run_carries_its_own_ids_under_concurrency() -> None:
    factory = ExecutionEngineFactory(plugins=[ChattyPlugin()], load_entrypoints=False)
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        async with factory:

            async def one(i: int) -> str:
                user = f"user-{i}"
                async with factory.user_execution_engine(UserExecutionContext.for_user(user)) as e:
                    return (await e.execute_agent("chatty", {"n": i})).run_id

            run_ids = await asyncio.gather(*(one(i) for i in range(30)))
    lines = [entry for entry in logs if entry["event"] == "working"]
    assert len(lines) == 90
    for entry in lines:
        assert entry["user_id"] == f"user-{entry['n']}"
        assert entry["run_id"] == run_ids[entry["n"]]
        assert entry["agent"] == "chatty"
    # Nothing leaks outside a run: the caller's context was never bound.
    assert "user_id" not in structlog.contextvars.get_contextvars()


def test_redaction_of_secret_looking_keys() -> None:
    event = redact_secrets(
        None,
        "info",
        {
            "event": "calling",
            "api_key": "sk-123",
            "Authorization": "Bearer abc",
            "headers": {"X-Token": "t", "accept": "json"},
            "items": [{"password": "p"}],
            "user_id": "alice",
        },
    )
    assert event["api_key"] == REDACTED and event["Authorization"] == REDACTED
    assert event["headers"] == {"X-Token": REDACTED, "accept": "json"}
    assert event["items"] == [{"password": REDACTED}]
    assert event["user_id"] == "alice"


def test_configure_json_output_redacts() -> None:
    stream = io.StringIO()
    try:
        configure(json=True, level="INFO", stream=stream)
        structlog.get_logger("x").info("hello", token="secret-value", user_id="alice")
        structlog.get_logger("x").debug("hidden")
    finally:
        structlog.reset_defaults()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 1
    assert lines[0]["token"] == REDACTED and lines[0]["user_id"] == "alice"
    assert "secret-value" not in stream.getvalue()


async def test_a_run_binds_over_the_callers_context_and_restores_it() -> None:
    """Ids the application bound itself are shadowed during a run, kept otherwise, and
    restored afterwards, whether the run executes inline or in its own task."""
    factory = ExecutionEngineFactory(plugins=[ChattyPlugin()], load_entrypoints=False)
    structlog.contextvars.bind_contextvars(user_id="caller", request="req-1")
    try:
        with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
            async with factory:
                ctx = UserExecutionContext.for_user("alice")
                async with factory.user_execution_engine(ctx) as engine:
                    inline = await engine.execute_agent("chatty", {"n": 1})
                    assert structlog.contextvars.get_contextvars() == {
                        "user_id": "caller",
                        "request": "req-1",
                    }
                    handle = await engine.start_run("chatty", {"n": 2})
                    in_task = await handle.result()
                log.info("after")
    finally:
        structlog.contextvars.clear_contextvars()
    working = [e for e in logs if e["event"] == "working"]
    assert {(e["n"], e["run_id"]) for e in working} == {
        (1, inline.run_id),
        (2, in_task.run_id),
    }
    assert all(e["user_id"] == "alice" and e["request"] == "req-1" for e in working)
    after = next(e for e in logs if e["event"] == "after")
    assert after["user_id"] == "caller" and "run_id" not in after


def test_old_logging_module_path_warns_and_names_the_new_one() -> None:
    sys.modules.pop("agentengine.logging", None)
    with pytest.warns(DeprecationWarning, match=r"import agentengine\.log instead"):
        old = importlib.import_module("agentengine.logging")
    assert old.configure is agentengine.log.configure
    assert old.redact_secrets is agentengine.log.redact_secrets
