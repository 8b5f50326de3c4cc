"""Fixtures for the MCP plugin's tests: real servers (stdio subprocesses, uvicorn over HTTP)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from agentengine import (
    ExecutionEngineFactory,
    RunContext,
    Settings,
    ToolError,
    agent,
    hookimpl,
)
from agentengine_mcp import MCPPlugin

SERVER = Path(__file__).with_name("identity_server.py")


@agent(name="call")
async def call_agent(run: RunContext, tool: str, args: dict[str, Any] | None = None) -> Any:
    """Call one tool; the run fails if the call does."""
    return await run.call_tool(tool, args or {})


@agent(name="calls")
async def calls_agent(run: RunContext, calls: list[list[Any]]) -> list[Any]:
    """Call several tools in order; a failed call is recorded as {"error": message}."""
    results: list[Any] = []
    for tool, args in calls:
        try:
            results.append(await run.call_tool(tool, args))
        except ToolError as exc:
            results.append({"error": exc.message})
    return results


class AgentsPlugin:
    """The test agents."""

    name = "mcp-test-agents"

    @hookimpl
    def agentengine_register_agents(self, registry: Any) -> None:
        registry.add(call_agent)
        registry.add(calls_agent)


def stdio_server(name: str = "srv", **fields: Any) -> dict[str, Any]:
    """A server entry for the test server as a stdio subprocess."""
    env = {"MCP_TEST_RECORD": "{env[MCP_TEST_RECORD]}", **fields.pop("env", {})}
    return {
        "name": name,
        "command": sys.executable,
        "args": [str(SERVER), "stdio"],
        "env": env,
        **fields,
    }


def make_factory(
    *servers: dict[str, Any], extra: tuple[Any, ...] = (), **kwargs: Any
) -> ExecutionEngineFactory:
    """A factory with the MCP plugin for ``servers``, the test agents and ``extra`` plugins."""
    plugin = MCPPlugin(config={"servers": list(servers)})
    return ExecutionEngineFactory(
        plugins=[plugin, AgentsPlugin(), *extra],
        load_entrypoints=False,
        config=Settings({}),
        **kwargs,
    )


def read_records(path: Path) -> list[dict[str, Any]]:
    """The lines the test server recorded."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def wait_for_record(path: Path, timeout: float = 20.0, **match: Any) -> dict[str, Any]:
    """Wait until the server recorded a line with these fields; return it."""
    import anyio

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in read_records(path):
            if all(record.get(k) == v for k, v in match.items()):
                return record
        await anyio.sleep(0.02)
    raise AssertionError(f"the server recorded no {match} within {timeout}s")


@pytest.fixture
def record_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the test server records calls (its path is in MCP_TEST_RECORD)."""
    path = tmp_path / "calls.jsonl"
    monkeypatch.setenv("MCP_TEST_RECORD", str(path))
    return path


def free_port() -> int:
    """A port on 127.0.0.1 nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class HttpServer:
    """The test server over streamable HTTP, in a uvicorn subprocess that can be killed and
    started again on the same port."""

    def __init__(self, record: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.record = record
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        env = {**os.environ, "MCP_TEST_RECORD": str(self.record)}
        self.proc = subprocess.Popen(
            [sys.executable, str(SERVER), "http", str(self.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the HTTP test server exited with {self.proc.returncode}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"the HTTP test server did not listen on {self.port} in {timeout}s")

    def kill(self) -> None:
        """SIGKILL the server and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def http_server(record_file: Path) -> Iterator[HttpServer]:
    """The test server over streamable HTTP on a free port of 127.0.0.1."""
    server = HttpServer(record_file)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
async def time_factory() -> AsyncIterator[ExecutionEngineFactory]:
    """A factory with the third-party ``mcp-server-time`` as server "time"."""
    factory = make_factory(
        {"name": "time", "command": "mcp-server-time", "args": ["--local-timezone", "UTC"]}
    )
    async with factory:
        yield factory
