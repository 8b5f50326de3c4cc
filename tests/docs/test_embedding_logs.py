"""The two logging set-ups of docs/embedding.md ("Logs in your application's logging"), each run
as written in a fresh interpreter, followed by a real run: the application's handlers get
agentengine's lines, the agent's and its own, with the run's ids and no secret."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "embedding.md"
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)

A_RUN = """
import asyncio
import logging

import structlog
from agentengine import ExecutionEngineFactory, RunContext, UserExecutionContext, agent, hookimpl


@agent(name="chat")
async def chat(run: RunContext, text: str) -> None:
    structlog.get_logger("acme.agent").info("calling the model", api_key="sk-SECRET-1")
    logging.getLogger("acme.stdlib").info("plain record in %s", "a run")
    raise RuntimeError("the model refused")


class ChatPlugin:
    @hookimpl
    def agentengine_register_agents(self, registry):
        registry.add(chat)


async def main() -> None:
    factory = ExecutionEngineFactory(plugins=[ChatPlugin()], load_entrypoints=False, environ={})
    async with factory:
        ctx = UserExecutionContext.for_user("alice")
        async with factory.user_execution_engine(ctx) as engine:
            result = await engine.execute_agent("chat", {"text": "hi"})
    print("RUN", result.run_id)


asyncio.run(main())
"""


def logging_blocks() -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## Logs in your application's logging") :]
    section = section[: section.index("\n## ", 1)]
    return _BLOCK.findall(section)


def run_with(block: str, tmp_path: Path) -> tuple[str, str]:
    done = subprocess.run(
        [sys.executable, "-c", block + "\n" + A_RUN],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (run_id,) = re.findall(r"^RUN (\S+)$", done.stdout, re.MULTILINE)
    assert "sk-SECRET-1" not in done.stdout + done.stderr
    return run_id, done.stderr


def test_a_stdlib_logging_application(tmp_path: Path) -> None:
    stdlib_block = logging_blocks()[0]
    run_id, err = run_with(stdlib_block, tmp_path)
    lines = err.splitlines()
    ids = f"user=alice run={run_id}"
    # The message has every field, the run's ids included (for formatters without %(run_id)s).
    fields = f"user_id=alice run_id={run_id} agent=chat"
    assert f"INFO acme.agent {ids} calling the model api_key=[redacted] {fields}" in lines
    assert f"INFO acme.stdlib {ids} plain record in a run" in lines  # through RunIdsFilter
    assert any(
        line.startswith(f"WARNING agentengine.runtime.engine {ids} run failed") for line in lines
    )
    (config_line,) = [line for line in lines if "agentengine.runtime.factory" in line]
    assert config_line.startswith("INFO agentengine.runtime.factory user=None run=None no config")


def test_a_structlog_application(tmp_path: Path) -> None:
    structlog_block = logging_blocks()[1]
    run_id, err = run_with(structlog_block, tmp_path)
    records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    by_event = {record["event"]: record for record in records}
    for event in ("calling the model", "plain record in a run", "run failed"):
        record = by_event[event]
        assert (record["user_id"], record["run_id"]) == ("alice", run_id), record
    assert by_event["calling the model"]["api_key"] == "[redacted]"
    assert by_event["calling the model"]["agent"] == "chat"
    assert by_event["run failed"]["logger"] == "agentengine.runtime.engine"
