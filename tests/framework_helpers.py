"""Shared pieces of the framework adapters' tests: real tools, a plugin, one run with its checks."""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import shutil
import subprocess
from ast import PyCF_ALLOW_TOP_LEVEL_AWAIT
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from agentengine import (
    Agent,
    ConfigError,
    ExecutionEngineFactory,
    Extension,
    RunContext,
    RunResult,
    RunStatus,
    Settings,
    Tool,
    UserExecutionContext,
    hookimpl,
    load_settings,
    parse_event,
    tool,
)
from agentengine.testing import EventRecorder, assert_isolated, assert_run_invariants
from server_helpers import AGENTENGINE, serve_env, serve_process


@tool
async def forecast(city: str) -> str:
    """The weather forecast for a city."""
    return f"sunny in {city}"


@tool
async def broken(city: str) -> str:
    """A tool that always fails."""
    raise RuntimeError(f"no data for {city}")


@tool(name="math.add")
async def dotted_add(a: int, b: int) -> int:
    """Add two integers (a dotted name, as MCP tools have)."""
    return a + b


@tool
async def whoami(run: RunContext) -> str:
    """The user of the run calling the tool."""
    return run.user_id


TOOLS: tuple[Tool, ...] = (forecast, broken, dotted_add, whoami)


class Plugin:
    """Registers the test tools and the given agents."""

    name = "pydantic-ai-tests"

    def __init__(self, *agents: Agent, tools: Sequence[Tool] = TOOLS) -> None:
        self.agents = agents
        self.tools = tools

    @hookimpl
    def agentengine_register_tools(self, registry: Any) -> None:
        for t in self.tools:
            registry.add(t)

    @hookimpl
    def agentengine_register_agents(self, registry: Any) -> None:
        for a in self.agents:
            registry.add(a)


def factory(*plugins: Any, **kwargs: Any) -> ExecutionEngineFactory:
    kwargs.setdefault("load_entrypoints", False)
    kwargs.setdefault("config", Settings({}))
    kwargs.setdefault("environ", {})
    return ExecutionEngineFactory(plugins=list(plugins), **kwargs)


async def run_once(
    agent: Agent,
    message: str = "hi",
    *,
    extra: Sequence[Any] = (),
    user: str = "alice",
    **kwargs: Any,
) -> RunResult:
    """Run ``agent`` once for ``user``; the run's events keep every invariant."""
    async with (
        factory(Plugin(agent), *extra, **kwargs) as f,
        f.user_execution_engine(UserExecutionContext.for_user(user)) as engine,
    ):
        result = await engine.execute_agent(agent.name, {"message": message})
    assert_run_invariants(result.events)
    return result


def shape(result: RunResult) -> list[tuple[Any, ...]]:
    """The run's events reduced to what a test states: type and the telling fields."""
    out: list[tuple[Any, ...]] = []
    for e in result.events:
        if e.type == "agent_thinking":
            out.append((e.type, e.text, e.reasoning))
        elif e.type == "tool_executing":
            out.append((e.type, e.tool, e.args))
        elif e.type == "tool_completed":
            out.append((e.type, e.tool, e.status))
        elif e.type == "agent_completed":
            out.append((e.type, e.status))
        elif e.type == "agent_error":
            out.append((e.type, e.error_type))
        else:
            out.append((e.type,))
    return out


def pairs_keyed_by_call_id(result: RunResult) -> None:
    """Each tool_executing has exactly one tool_completed with its id, and the same tool."""
    started = {e.tool_call_id: e.tool for e in result.events if e.type == "tool_executing"}
    ended = [e for e in result.events if e.type == "tool_completed"]
    assert sorted(e.tool_call_id for e in ended) == sorted(started)
    for e in ended:
        assert started[e.tool_call_id] == e.tool


class Recorder(Extension):
    """``around_tool`` middleware: sees every call, refuses ``double``."""

    def __init__(self, seen: list[str]) -> None:
        self.seen = seen

    async def around_tool(self, run: Any, call: Any, call_next: Any) -> Any:
        self.seen.append(call.name)
        if call.name == "double":
            raise PermissionError("double is not allowed for this user")
        return await call_next(call)


class MiddlewarePlugin:
    """Adds a ``Recorder`` to every engine."""

    name = "recorder"

    def __init__(self, seen: list[str]) -> None:
        self.seen = seen

    @hookimpl
    def agentengine_engine_extensions(self, context: Any, engine: Any) -> Any:
        return Recorder(self.seen)


async def twenty_users_whoami(agent: Agent) -> None:
    """20 users run ``agent`` (which calls ``whoami`` once and answers "you are <result>") at
    once: each run's events and tool call belong to its user only."""
    recorder = EventRecorder()
    users = [f"user-{i:02d}" for i in range(20)]
    async with factory(Plugin(agent), recorder, max_concurrent_runs=100) as f:

        async def one(user: str) -> Any:
            async with f.user_execution_engine(UserExecutionContext.for_user(user)) as engine:
                return await engine.execute_agent(agent.name, {"message": "who am I?"})

        results = await asyncio.wait_for(asyncio.gather(*(one(u) for u in users)), 60)
    for user, result in zip(users, results, strict=True):
        assert result.status is RunStatus.SUCCEEDED, result.error
        assert result.output == f"you are {user}"
        assert_run_invariants(result.events)
        assert {e.user_id for e in result.events} == {user}
        completed = next(e for e in result.events if e.type == "tool_completed")
        assert completed.result == user
    assert_isolated(recorder)


def assert_bad_table(
    tmp_path: Path, text: str, table: str, key: str, load: Callable[[Settings], Any]
) -> None:
    """Loading ``text`` as agentengine.toml raises a ``ConfigError`` naming the file, the
    table and the key."""
    path = tmp_path / "agentengine.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load(load_settings(path))
    message = str(info.value)
    assert str(path) in message
    assert f"[{table}]" in message
    assert key in message


def installed(fixture: Path, tmp_path: Path) -> Path:
    """A fixture distribution, as installed, in a folder of its own for PYTHONPATH."""
    site = tmp_path / "site"
    shutil.copytree(fixture, site)
    return site


def agentengine_run(site: Path, cwd: Path, agent: str, message: str) -> list[Any]:
    """The events of ``agentengine run AGENT --json`` in a subprocess (keeping every invariant)."""
    proc = subprocess.run(
        [AGENTENGINE, "run", agent, "--input", json.dumps({"message": message}), "--json"],
        env=serve_env(site),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    events = [parse_event(json.loads(line)) for line in proc.stdout.splitlines() if line.strip()]
    assert_run_invariants(events)
    return events


def serve_one_run(
    site: Path, agent: str, message: str, secret: str
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """One run of ``agent`` by user ``ann`` over HTTP on ``agentengine serve --dev``: the
    agent as ``GET /v1/agents`` lists it (what the web page's form shows), the run's record,
    and its events from the SSE stream."""
    with serve_process(site, "--dev", env={"AGENTENGINE_JWT_SECRET": secret}) as (_proc, port):
        base = f"http://127.0.0.1:{port}"
        token = httpx.post(f"{base}/v1/dev/token", json={"user": "ann"}, timeout=10).json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        agents = httpx.get(f"{base}/v1/agents", headers=headers, timeout=10).json()["agents"]
        listed = next(a for a in agents if a["name"] == agent)
        r = httpx.post(
            f"{base}/v1/runs",
            json={"agent": agent, "input": {"message": message}},
            headers=headers,
            timeout=10,
        )
        assert r.status_code == 202, r.text
        run_id = r.json()["run_id"]
        events: list[dict[str, Any]] = []
        with httpx.stream(
            "GET", f"{base}/v1/events?after=0", headers=headers, timeout=httpx.Timeout(30)
        ) as stream:
            for line in stream.iter_lines():
                if line.startswith("data:"):
                    event = json.loads(line.removeprefix("data:").strip())
                    if event.get("run_id") == run_id:
                        events.append(event)
                        if event["type"] == "agent_completed":
                            break
        record = httpx.get(f"{base}/v1/runs/{run_id}", headers=headers, timeout=10).json()
    return listed, record, events


async def cancelled_when(agent: Agent, reached: asyncio.Event) -> RunResult:
    """Start a run of ``agent``, cancel it once ``reached`` is set; the cancelled run's result
    (its events keep every invariant)."""
    async with (
        factory(Plugin(agent)) as f,
        f.user_execution_engine(UserExecutionContext.for_user("alice")) as engine,
    ):
        handle = await engine.start_run(agent.name, {"message": "go"})
        await asyncio.wait_for(reached.wait(), 10)
        await handle.cancel()
        result = await handle.result()
    assert result.status is RunStatus.CANCELLED
    assert_run_invariants(result.events)
    return result


PAGE = Path(__file__).resolve().parents[1] / "docs" / "agent-frameworks.md"
_BLOCK = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def doc_blocks(section: str, language: str) -> list[str]:
    """The ``language`` blocks of the ``## section`` of docs/agent-frameworks.md, in order."""
    text = PAGE.read_text(encoding="utf-8")
    start = text.index(f"\n## {section}\n")
    end = text.find("\n## ", start + 1)
    part = text[start : end if end != -1 else len(text)]
    return [body for lang, body in _BLOCK.findall(part) if lang == language]


async def run_doc_python(section: str, namespace: dict[str, Any]) -> None:
    """Every ```python block of the section, in order, in ``namespace`` (top-level await)."""
    for i, code in enumerate(doc_blocks(section, "python")):
        compiled = compile(
            code, f"agent-frameworks.md[{section}][{i}]", "exec", flags=PyCF_ALLOW_TOP_LEVEL_AWAIT
        )
        result = eval(compiled, namespace)
        if inspect.iscoroutine(result):
            await result


async def run_with_history(agent: Agent, message: str) -> RunResult:
    """A run of ``agent`` given ``message`` after two earlier messages ("I am Ann.", "Hello
    Ann."); a run given a malformed ``history`` fails naming the field."""
    async with (
        factory(Plugin(agent)) as f,
        f.user_execution_engine(UserExecutionContext.for_user("ann")) as engine,
    ):
        result = await engine.execute_agent(
            agent.name,
            {
                "message": message,
                "history": [
                    {"role": "user", "content": "I am Ann."},
                    {"role": "assistant", "content": "Hello Ann."},
                ],
            },
        )
        bad = await engine.execute_agent(agent.name, {"message": "x", "history": [{"role": "bot"}]})
    assert bad.status is RunStatus.FAILED and "history" in (bad.error or "")
    assert_run_invariants(result.events)
    return result
