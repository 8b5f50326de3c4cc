"""Logging: run ids bound on every line of a run, only that run's; secrets redacted."""

from __future__ import annotations

import asyncio
import io
import json

import structlog
from agentengine import ExecutionEngineFactory, RunContext, UserExecutionContext, agent, hookimpl
from agentengine.logging import REDACTED, configure, redact_secrets
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
