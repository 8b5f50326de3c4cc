"""Logging: run ids bound on every line of a run, only that run's; secrets redacted."""

from __future__ import annotations

import asyncio
import importlib
import io
import json
import logging
import sys
from collections.abc import Iterator

import agentengine.log
import pytest
import structlog
from agentengine import (
    ExecutionEngineFactory,
    RunContext,
    RunStatus,
    UserExecutionContext,
    agent,
    hookimpl,
    tool,
)
from agentengine.log import REDACTED, RunIdsFilter, configure, redact_secrets
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


stdlib_log = logging.getLogger("acme.tools")


@tool
async def lookup(run: RunContext, query: str) -> str:
    """A tool of the application that logs through the standard library."""
    stdlib_log.info("looking up %s", query)
    return query.upper()


@agent(name="logs-then-fails")
async def logs_then_fails(run: RunContext, text: str) -> None:
    log.info("calling the model", api_key="sk-secret-123", text=text)
    await run.call_tool("lookup", {"query": text})
    raise RuntimeError(f"model refused {text}")


class StdlibPlugin:
    name = "stdlib-logging"

    @hookimpl
    def agentengine_register_agents(self, registry):  # type: ignore[no-untyped-def]
        registry.add(logs_then_fails)

    @hookimpl
    def agentengine_register_tools(self, registry):  # type: ignore[no-untyped-def]
        registry.add(lookup)


@pytest.fixture
def stdlib_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """structlog handing lines to logging, caught by pytest's (stdlib) handler."""
    caplog.set_level(logging.INFO)
    caplog.handler.addFilter(RunIdsFilter())
    configure(stdlib=True)
    try:
        yield caplog
    finally:
        structlog.reset_defaults()


async def test_stdlib_handlers_get_every_line_with_the_run_ids(
    stdlib_logs: pytest.LogCaptureFixture,
) -> None:
    """configure(stdlib=True): the application's logging handlers receive agentengine's
    lines, the agent's structlog lines and the application's own stdlib lines of a real run,
    each with that run's user_id, run_id and agent, secrets redacted."""
    factory = ExecutionEngineFactory(plugins=[StdlibPlugin()], load_entrypoints=False)
    async with factory:

        async def one(user: str) -> str:
            async with factory.user_execution_engine(UserExecutionContext.for_user(user)) as e:
                result = await e.execute_agent("logs-then-fails", {"text": user})
            assert result.status is RunStatus.FAILED
            return result.run_id

        users = ("alice", "bob")
        run_ids = dict(zip(users, await asyncio.gather(*map(one, users)), strict=True))
    records = [r for r in stdlib_logs.records if getattr(r, "run_id", None) is not None]
    by_kind: dict[tuple[str, str], logging.LogRecord] = {}
    for record in records:
        assert record.run_id == run_ids[record.user_id]  # type: ignore[attr-defined]
        assert record.agent == "logs-then-fails"  # type: ignore[attr-defined]
        by_kind[(record.name, record.user_id)] = record  # type: ignore[attr-defined]
    for user in ("alice", "bob"):
        model = by_kind[("test-agent", user)]  # the agent's structlog line
        assert model.levelname == "INFO"
        assert model.getMessage().startswith("calling the model ")
        assert model.api_key == REDACTED  # type: ignore[attr-defined]
        assert model.text == user  # type: ignore[attr-defined]
        tool_line = by_kind[("acme.tools", user)]  # the application's own stdlib line
        assert tool_line.getMessage() == f"looking up {user}"
        failed = by_kind[("agentengine.runtime.engine", user)]  # the library's own line
        assert failed.levelname == "WARNING" and failed.getMessage().startswith("run failed")
        assert failed.error_type == "RuntimeError"  # type: ignore[attr-defined]
    assert "sk-secret-123" not in stdlib_logs.text
    # Outside a run the three attributes are there, None: "%(run_id)s" formats every record.
    structlog.get_logger("agentengine.x").info("outside", name="a field named like an attribute")
    outside = stdlib_logs.records[-1]
    assert (outside.user_id, outside.run_id, outside.agent) == (None, None, None)  # type: ignore[attr-defined]
    assert outside.name == "agentengine.x"
    assert outside.getMessage() == "outside name='a field named like an attribute'"
    formatter = logging.Formatter("%(levelname)s %(user_id)s %(run_id)s %(message)s")
    assert formatter.format(outside) == "INFO None None " + outside.getMessage()


def test_stdlib_mode_keeps_exceptions_for_the_handler_and_levels(
    stdlib_logs: pytest.LogCaptureFixture,
) -> None:
    logger = structlog.get_logger("agentengine.y")
    try:
        raise ValueError("bad value")
    except ValueError:
        logger.exception("it broke", password="hunter2")
    logging.getLogger("agentengine.y").setLevel(logging.WARNING)
    try:
        logger.info("dropped by the application's level")
    finally:
        logging.getLogger("agentengine.y").setLevel(logging.NOTSET)
    (record,) = [r for r in stdlib_logs.records if r.name == "agentengine.y"]
    assert record.levelname == "ERROR" and record.exc_info is not None
    assert record.exc_info[0] is ValueError
    assert "hunter2" not in stdlib_logs.text and "ValueError: bad value" in stdlib_logs.text
    with pytest.raises(ValueError, match="drop json= and stream="):
        configure(stdlib=True, json=True)
