"""A real agentengine server on 127.0.0.1 for the tests, plus agents and clients they use."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
from agentengine import ExecutionEngineFactory, RunContext, agent, hookimpl
from agentengine_server import AgentServer, ServerSettings, create_app, uvicorn_config
from websockets.asyncio.client import ClientConnection, connect

SECRET = "s" * 40  # long enough (>= 32 bytes); tests sign their own tokens with it


@agent(name="chatty")
async def chatty(run: RunContext, count: int, size: int = 16, delay: float = 0.0) -> int:
    """Emit ``count`` thinking events of ``size`` characters, ``delay`` seconds apart."""
    filler = "x" * size
    for i in range(count):
        await run.think(f"{i}:{filler}")
        if delay:
            await asyncio.sleep(delay)
        elif i % 50 == 0:
            await asyncio.sleep(0)
    return count


@agent(name="sleeper")
async def sleeper(run: RunContext, seconds: float) -> str:
    """Think, sleep, answer."""
    await run.think(f"sleeping {seconds}s")
    await asyncio.sleep(seconds)
    return "rested"


@agent(name="odd")
async def odd(run: RunContext) -> Any:
    """Return what JSON cannot hold as such."""
    return {"nan": float("nan"), "big": float("inf"), "set": {1}, "when": time.gmtime(0)[:1]}


class ServerTestPlugin:
    """Agents the server tests need besides the demo ones."""

    name = "server-tests"

    @hookimpl
    def agentengine_register_agents(self, registry: Any) -> None:
        registry.add(chatty)
        registry.add(sleeper)
        registry.add(odd)


def make_token(user: str, *, ttl: float = 600, secret: str = SECRET, **claims: Any) -> str:
    """An HS256 token for ``user`` (extra claims override)."""
    now = int(time.time())
    payload: dict[str, Any] = {"sub": user, "iat": now, "exp": now + int(ttl), **claims}
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, secret, algorithm="HS256")


@dataclass
class RunningServer:
    """A server running in a background thread with its own event loop."""

    server: AgentServer
    thread: threading.Thread
    loop: asyncio.AbstractEventLoop
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/ws"

    @property
    def state(self) -> Any:
        return self.server.state

    def call(self, coro: Any, timeout: float = 30) -> Any:
        """Run a coroutine on the server's loop (for looking inside)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def auth(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {make_token(user)}"}


@contextmanager
def running_server(
    *,
    plugins: Sequence[Any] = (),
    settings: ServerSettings | None = None,
    dev: bool = False,
    **factory_kwargs: Any,
) -> Iterator[RunningServer]:
    """Start agentengine-server on a free loopback port; stop it (gracefully) on exit."""
    factory_kwargs.setdefault("idle_ttl", None)
    factory_kwargs.setdefault("drain_timeout", 1.0)
    factory_kwargs.setdefault("enable_plugins", ["demo"])  # the demo agents, opt-in
    factory = ExecutionEngineFactory(
        plugins=[ServerTestPlugin(), *plugins], load_entrypoints=True, **factory_kwargs
    )
    app = create_app(factory, secret=SECRET, dev=dev, settings=settings or ServerSettings())
    started = threading.Event()
    holder: dict[str, Any] = {}

    def on_started(server: AgentServer) -> None:
        holder["loop"] = asyncio.get_running_loop()
        started.set()

    server = AgentServer(uvicorn_config(app, host="127.0.0.1", port=0), on_started=on_started)

    def serve() -> None:
        try:
            asyncio.run(server.serve())
        finally:
            started.set()

    thread = threading.Thread(target=serve, name="agentengine-test-server", daemon=True)
    thread.start()
    assert started.wait(30), "server did not start"
    assert server.started, "server failed to start"
    running = RunningServer(server, thread, holder["loop"], server.bound_port or 0)
    try:
        yield running
    finally:
        server.should_exit = True
        thread.join(30)
        assert not thread.is_alive(), "server did not stop"


async def ws_connect(
    srv: RunningServer, user: str, *, after: str | None = None, **kwargs: Any
) -> ClientConnection:
    """A WebSocket client of ``user`` (token in the subprotocol header)."""
    url = srv.ws_url + (f"?after={after}" if after is not None else "")
    kwargs.setdefault("open_timeout", 30)
    return await connect(url, subprotocols=["bearer", make_token(user)], **kwargs)  # type: ignore[list-item]


async def recv_json(ws: ClientConnection, timeout: float = 20) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        data: dict[str, Any] = json.loads(await ws.recv())
        return data


async def recv_until(
    ws: ClientConnection, predicate: Any, timeout: float = 30
) -> list[dict[str, Any]]:
    """Frames up to and including the first one matching ``predicate``."""
    frames = []
    async with asyncio.timeout(timeout):
        while True:
            frame = json.loads(await ws.recv())
            frames.append(frame)
            if predicate(frame):
                return frames


def http(srv: RunningServer) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=srv.base_url, timeout=30)


async def wait_run(
    client: httpx.AsyncClient, run_id: str, headers: dict[str, str], timeout: float = 30
) -> dict[str, Any]:
    """Poll ``GET /v1/runs/{id}`` until the run ended."""
    async with asyncio.timeout(timeout):
        while True:
            r = await client.get(f"/v1/runs/{run_id}", headers=headers)
            assert r.status_code == 200, r.text
            body: dict[str, Any] = r.json()
            if body["status"] != "running":
                return body
            await asyncio.sleep(0.02)


async def eventually(predicate: Any, timeout: float = 20, what: str = "condition") -> None:
    """Wait until ``predicate()`` is true (polling: the server counts in another thread)."""
    try:
        async with asyncio.timeout(timeout):
            while not predicate():  # noqa: ASYNC110 - state of another thread, no event to await
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def sse_items(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """Parse an event stream: yields {"id", "event", "data"} per dispatched event."""
    item: dict[str, Any] = {}
    async for line in response.aiter_lines():
        if line == "":
            if "data" in item:
                yield item
            item = {}
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "data":
                item["data"] = json.loads(value)
            else:
                item[field] = value


def check_run_sequences(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Group events by run and check each run is 1..n, started first, completed last."""
    runs: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        runs.setdefault(e["run_id"], []).append(e)
    for run_id, evs in runs.items():
        assert [e["seq"] for e in evs] == list(range(1, len(evs) + 1)), run_id
        assert evs[0]["type"] == "agent_started", run_id
        assert evs[-1]["type"] == "agent_completed", run_id
    return runs


def check_runs_end_once(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """``check_run_sequences``, and each run has exactly one terminal event (a second
    ``agent_completed`` in the middle of a run would pass the sequence check alone)."""
    runs = check_run_sequences(events)
    for run_id, evs in runs.items():
        assert sum(e["type"] == "agent_completed" for e in evs) == 1, run_id
    return runs


def small_socket(port: int) -> socket.socket:
    """A connected client socket with a tiny receive buffer: a client that stops reading
    makes the server's sends back up quickly."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


# -- `agentengine serve` as a subprocess --------------------------------------------------------

AGENTENGINE = str(Path(sys.executable).parent / "agentengine")

#: A plugin module (source) with the agent ``slowpoke(seconds)``: think, sleep, answer.
SLOW_PLUGIN = textwrap.dedent(
    """
    import asyncio
    from agentengine import RunContext, agent, hookimpl

    @agent(name="slowpoke")
    async def slowpoke(run: RunContext, seconds: float) -> str:
        await run.think("working")
        await asyncio.sleep(seconds)
        return "finished"

    class SlowPlugin:
        name = "slowplug"

        @hookimpl
        def agentengine_register_agents(self, registry):
            registry.add(slowpoke)

    plugin = SlowPlugin()
    """
)


def free_port() -> int:
    """A loopback port free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_env(path: Path, **extra: str) -> dict[str, str]:
    """The environment of a server subprocess: no AGENTENGINE_* of ours, ``path`` importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTENGINE_")}
    env["PYTHONPATH"] = str(path)
    env.update(extra)
    return env


@contextmanager
def serve_process(
    path: Path,
    *args: str,
    plugins: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """``agentengine serve --port P *args`` on loopback, once ``/healthz`` answers.

    ``plugins`` maps a module name to its source, written under ``path`` and passed as
    ``--plugin MODULE:plugin``. Yields (process, port); the process is killed on exit if it
    is still running (read its output with ``proc.communicate()``).
    """
    plugin_args: list[str] = []
    for module, source in (plugins or {}).items():
        (path / f"{module}.py").write_text(source)
        plugin_args += ["--plugin", f"{module}:plugin"]
    port = free_port()
    proc = subprocess.Popen(
        [AGENTENGINE, "serve", "--port", str(port), *plugin_args, *args],
        env=serve_env(path, **(env or {})),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.communicate()[0]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not come up"
            time.sleep(0.1)
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def dev_token(port: int, user: str) -> str:
    """A token minted by a ``--dev`` server's ``POST /v1/dev/token``."""
    r = httpx.post(f"http://127.0.0.1:{port}/v1/dev/token", json={"user": user}, timeout=10)
    assert r.status_code == 200, r.text
    return str(r.json()["token"])


#: A plugin module (``chatter:plugin``) whose agent ``chatter`` thinks ``count`` times, with
#: ``delay`` seconds between steps: what the multi-process Redis tests run.
CHATTER = textwrap.dedent(
    """
    import asyncio
    from agentengine import RunContext, agent, hookimpl

    @agent(name="chatter")
    async def chatter(run: RunContext, count: int = 5, delay: float = 0.0) -> int:
        for i in range(count):
            await run.think(f"step {i}")
            await asyncio.sleep(delay)
        return count

    class ChatPlugin:
        name = "chatplug"

        @hookimpl
        def agentengine_register_agents(self, registry):
            registry.add(chatter)

    plugin = ChatPlugin()
    """
)
