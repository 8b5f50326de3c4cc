"""``drain_on_signal`` in an app of one's own under a real ``uvicorn`` process: on SIGTERM,
runs drain (new ones get 503 with ``Retry-After``) while the WebSockets stay open, every client
receives every run's terminal event, and only then does uvicorn close connections and exit."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_helpers import eventually, free_port, serve_env
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

#: A Starlette app as a user would write it: the factory and the drain in its lifespan, a run
#: per POST answered 202 (the run outlives the request), each user's events on a WebSocket.
APP = textwrap.dedent(
    """
    import asyncio
    import contextlib

    from agentengine import (
        DrainingErrorMiddleware,
        ExecutionEngineFactory,
        RunContext,
        UserExecutionContext,
        agent,
        drain_on_signal,
        hookimpl,
    )
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route, WebSocketRoute
    from starlette.websockets import WebSocket


    @agent(name="napper")
    async def napper(run: RunContext, seconds: float) -> str:
        await run.think(f"napping {seconds}s")
        await asyncio.sleep(seconds)
        return "rested"


    class Agents:
        name = "drain-app-agents"

        @hookimpl
        def agentengine_register_agents(self, registry):
            registry.add(napper)


    background = set()


    async def finish(engine, handle):
        try:
            await handle.wait()
        finally:
            await engine.cleanup()


    async def start_run(request: Request) -> JSONResponse:
        factory = request.app.state.factory
        body = await request.json()
        ctx = UserExecutionContext.for_user(request.path_params["user"])
        engine = await factory.create_for_user(ctx)  # DrainingError while draining: 503
        handle = await engine.start_run("napper", {"seconds": body["seconds"]})
        task = asyncio.create_task(finish(engine, handle))
        background.add(task)
        task.add_done_callback(background.discard)
        return JSONResponse({"run_id": handle.run_id}, status_code=202)


    async def draining(request: Request) -> JSONResponse:
        return JSONResponse({"draining": request.app.state.drain.draining})


    async def events(websocket: WebSocket) -> None:
        drain = websocket.app.state.drain
        await websocket.accept()
        async with contextlib.aclosing(
            drain.subscribe(websocket.path_params["user"], None)
        ) as items:
            async for item in items:
                await websocket.send_json(item.to_wire())
        await websocket.close()


    @contextlib.asynccontextmanager
    async def lifespan(app):
        factory = ExecutionEngineFactory(
            plugins=[Agents()], load_entrypoints=False, drain_timeout=DRAIN, idle_ttl=None
        )
        async with factory, drain_on_signal(factory) as drain:
            app.state.factory, app.state.drain = factory, drain
            yield


    app = Starlette(
        routes=[
            Route("/users/{user}/runs", start_run, methods=["POST"]),
            Route("/draining", draining),
            WebSocketRoute("/users/{user}/events", events),
        ],
        lifespan=lifespan,
        middleware=[Middleware(DrainingErrorMiddleware)],
    )
    """
)


@contextmanager
def uvicorn_process(tmp_path: Path, source: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``uvicorn drainapp:app`` on a free loopback port, once it answers; yields (process,
    base URL). Killed on exit if still running."""
    (tmp_path / "drainapp.py").write_text(source)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "drainapp:app", "--port", str(port)],
        cwd=tmp_path,
        env=serve_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.communicate()[0]
            try:
                if httpx.get(f"{base}/draining", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "uvicorn did not come up"
            time.sleep(0.1)
        yield proc, base
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


async def _read_until_closed(ws: ClientConnection, into: list[dict[str, Any]]) -> Any:
    """Append every frame to ``into`` until the server closes; the close frame received."""
    try:
        async with asyncio.timeout(60):
            while True:
                into.append(json.loads(await ws.recv()))
    except ConnectionClosed as exc:
        return exc.rcvd


async def _sigterm_during_runs(
    proc: subprocess.Popen[str], base: str
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any], dict[str, str], httpx.Response]:
    """Two users streaming, each with a short and an endless run; SIGTERM; a run asked for
    during the drain. Returns the frames and close frame of each user's WebSocket, the runs
    (run id: "user/short" or "user/long") and the answer to the run asked for while draining."""
    users = ("alice", "bob")
    ws_base = base.replace("http://", "ws://")
    sockets = {u: await connect(f"{ws_base}/users/{u}/events", open_timeout=20) for u in users}
    frames: dict[str, list[dict[str, Any]]] = {u: [] for u in users}
    readers = {u: asyncio.create_task(_read_until_closed(sockets[u], frames[u])) for u in users}
    runs: dict[str, str] = {}
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        for user in users:
            for kind, seconds in (("short", 0.5), ("long", 3600)):
                r = await client.post(f"/users/{user}/runs", json={"seconds": seconds})
                assert r.status_code == 202, r.text
                runs[r.json()["run_id"]] = f"{user}/{kind}"

        def thinking(user: str) -> int:
            return sum(f.get("type") == "agent_thinking" for f in frames[user])

        # Every run is under way (and every stream live) before the signal.
        await eventually(lambda: all(thinking(u) == 2 for u in users), what="runs started")
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            while not (await client.get("/draining")).json()["draining"]:  # noqa: ASYNC110 - another process
                await asyncio.sleep(0.02)
        refused = await client.post("/users/carol/runs", json={"seconds": 0.1})
    closes = {u: await readers[u] for u in users}
    return frames, closes, runs, refused


@pytest.mark.slow
def test_sigterm_under_uvicorn_drains_runs_before_connections_close(tmp_path: Path) -> None:
    with uvicorn_process(tmp_path, "DRAIN = 2.0\n" + APP) as (proc, base):
        frames, closes, runs, refused = asyncio.run(_sigterm_during_runs(proc, base))
        output = proc.communicate(timeout=60)[0]
    # New runs during the drain: 503 with Retry-After, saying why.
    assert refused.status_code == 503, refused.text
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"] == "shutting_down"
    # Every client got its own runs' terminal events, the short run succeeded, the endless one
    # was cancelled at the drain deadline; and only then did the server close the stream.
    for user, received in frames.items():
        ended = {f["run_id"]: f for f in received if f.get("type") == "agent_completed"}
        mine = {run_id: name for run_id, name in runs.items() if name.startswith(f"{user}/")}
        assert set(ended) == set(mine), (user, received)
        for run_id, name in mine.items():
            expected = "succeeded" if name.endswith("/short") else "cancelled"
            assert ended[run_id]["status"] == expected, (name, ended[run_id])
        assert {f["user_id"] for f in received} == {user}
        assert closes[user] is not None and closes[user].code == 1000, closes[user]
    # The process exits (uvicorn re-raises the signal it stopped on, as it always does).
    assert proc.returncode in (0, -signal.SIGTERM), output
    assert "draining runs before connections close" in output
    assert "drained" in output
