"""docs/embedding.md, executed: its FastAPI application is written out, its own tests run with
pytest, ``app.py`` type-checks under ``mypy --strict``, and the logging set-ups run.

The page's convention (checked here): every ```python block either starts with
``# file: NAME`` (blocks naming one file are joined in order: ``app.py``, the application, and
``test_app.py``, its tests), or is one of the two logging set-ups of "Logs in your
application's logging", each run as written in a fresh interpreter followed by a real run whose
log lines are checked. Nothing else is Python; shell sessions are ```console and ```toml blocks
parse. tests/server/test_drain_uvicorn.py serves the same ``app.py`` under a real uvicorn.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from embedding_app import FILE_LINE, blocks, doc_files, doc_text, write_app

LOGGING_SECTION = "## Logs in your application's logging"


def _section(title: str) -> str:
    text = doc_text()
    start = text.index(f"\n{title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def _clean_env(path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTENGINE_")}
    env["PYTHONPATH"] = str(path)
    return env


def test_every_python_block_is_a_file_or_a_logging_set_up() -> None:
    logging_blocks = blocks(_section(LOGGING_SECTION), "python")
    assert len(logging_blocks) == 2
    for body in blocks(doc_text(), "python"):
        first = body.partition("\n")[0].strip()
        assert FILE_LINE.fullmatch(first) or body in logging_blocks, body[:200]
    assert sorted(doc_files()) == ["app.py", "test_app.py"]
    for body in blocks(doc_text(), "toml"):
        tomllib.loads(body)


def test_the_applications_own_tests_pass(tmp_path: Path) -> None:
    files = write_app(tmp_path)
    expected = len(re.findall(r"^(?:async )?def test_", files["test_app.py"], re.MULTILINE))
    assert expected >= 6
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_clean_env(tmp_path),
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{expected} passed" in done.stdout, done.stdout
    assert "skipped" not in done.stdout
    documented = re.search(r"^(\d+) passed\n```", doc_text(), re.MULTILINE)
    assert documented is not None
    assert int(documented.group(1)) == expected


def test_the_application_type_checks_under_mypy_strict(tmp_path: Path) -> None:
    write_app(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", "app.py"],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # no configuration file of ours: --strict and the defaults only
        env=_clean_env(tmp_path),
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# -- the logging set-ups --------------------------------------------------------------------

#: Appended to each logging block: a real run whose agent logs through structlog (with a
#: secret) and through the standard library, then fails.
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


def _run_with(block: str, tmp_path: Path) -> tuple[str, str]:
    done = subprocess.run(
        [sys.executable, "-c", block + "\n" + A_RUN],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_clean_env(tmp_path),
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (run_id,) = re.findall(r"^RUN (\S+)$", done.stdout, re.MULTILINE)
    assert "sk-SECRET-1" not in done.stdout + done.stderr
    return run_id, done.stderr


def test_a_stdlib_logging_application(tmp_path: Path) -> None:
    stdlib_block = blocks(_section(LOGGING_SECTION), "python")[0]
    run_id, err = _run_with(stdlib_block, tmp_path)
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
    structlog_block = blocks(_section(LOGGING_SECTION), "python")[1]
    run_id, err = _run_with(structlog_block, tmp_path)
    records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    by_event = {record["event"]: record for record in records}
    for event in ("calling the model", "plain record in a run", "run failed"):
        record = by_event[event]
        assert (record["user_id"], record["run_id"]) == ("alice", run_id), record
    assert by_event["calling the model"]["api_key"] == "[redacted]"
    assert by_event["calling the model"]["agent"] == "chat"
    assert by_event["run failed"]["logger"] == "agentengine.runtime.engine"
