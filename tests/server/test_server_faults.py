"""``agentengine serve`` as a real subprocess under faults: user code raising ``SystemExit`` or
``KeyboardInterrupt``, agents that ignore cancellation, and shutdown signals."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_helpers import dev_token, recv_until, serve_process
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

AGENTENGINE = str(Path(sys.executable).parent / "agentengine")

FAULT_PLUGIN = textwrap.dedent(
    """
    import asyncio
    from agentengine import RunContext, agent, hookimpl, tool

    def quit_with(kind):
        if kind == "SystemExit":
            raise SystemExit(3)
        if kind == "KeyboardInterrupt":
            raise KeyboardInterrupt()
        raise RuntimeError(kind)

    @tool(name="quits")
    async def quits(kind: str) -> str:
        await asyncio.sleep(0.01)
        quit_with(kind)
        return "unreachable"

    @agent(name="quitter")
    async def quitter(run: RunContext, kind: str, where: str = "tool") -> str:
        await run.think("about to quit")
        if where == "agent":
            await asyncio.sleep(0.01)
            quit_with(kind)
        return await run.call_tool("quits", {"kind": kind})

    @agent(name="slowpoke")
    async def slowpoke(run: RunContext, seconds: float) -> str:
        await run.think("working")
        await asyncio.sleep(seconds)
        return "finished"

    @agent(name="stubborn")
    async def stubborn(run: RunContext, seconds: float = 3600) -> str:
        await run.think("ignoring cancellation")
        deadline = asyncio.get_running_loop().time() + seconds
        while asyncio.get_running_loop().time() < deadline:
            try:
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                pass
        return "finished anyway"

    @agent(name="swallower")
    async def swallower(run: RunContext) -> str:
        await run.think("sleeping")
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            pass
        return "ignored the cancel"

    class FaultPlugin:
        name = "faultplug"

        @hookimpl
        def agentengine_register_tools(self, registry):
            registry.add(quits)

        @hookimpl
        def agentengine_register_agents(self, registry):
            for a in (quitter, slowpoke, stubborn, swallower):
                registry.add(a)

    plugin = FaultPlugin()
    """
)


class Served:
    """A running ``agentengine serve --dev`` process and its output, read as it comes."""

    def __init__(self, proc: subprocess.Popen[str], port: int) -> None:
        self.proc = proc
        self.port = port
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for_line(self, needle: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.output:
            assert self.proc.poll() is None, self.output
            assert time.monotonic() < deadline, f"no {needle!r} in: {self.output}"
            time.sleep(0.05)

    def wait(self, timeout: float) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(10)
        return code

    def token(self, user: str) -> str:
        return dev_token(self.port, user)

    async def ws(self, user: str) -> ClientConnection:
        return await connect(
            f"ws://127.0.0.1:{self.port}/v1/ws",
            subprotocols=["bearer", self.token(user)],  # type: ignore[list-item]
            open_timeout=20,
        )


@contextmanager
def serve(tmp_path: Path, **env: str) -> Iterator[Served]:
    """``agentengine serve --dev`` with the fault plugin, its output read as it comes."""
    with serve_process(tmp_path, "--dev", plugins={"faultplug": FAULT_PLUGIN}, env=env) as (
        proc,
        port,
    ):
        yield Served(proc, port)


_BACKLOG: dict[int, list[dict[str, Any]]] = {}


async def next_frame(ws: ClientConnection) -> dict[str, Any]:
    """The socket's next frame: one set aside by ``start_run`` first, then from the wire."""
    backlog = _BACKLOG.get(id(ws))
    if backlog:
        return backlog.pop(0)
    frame: dict[str, Any] = json.loads(await ws.recv())
    return frame


async def start_run(ws: ClientConnection, agent: str, **run_input: Any) -> str:
    """Send a run frame; return the run id (event frames arriving meanwhile are kept)."""
    await ws.send(json.dumps({"type": "run", "agent": agent, "input": run_input}))
    kept = _BACKLOG.setdefault(id(ws), [])
    async with asyncio.timeout(30):
        while True:
            frame = json.loads(await ws.recv())
            if frame.get("type") in ("run_accepted", "error"):
                assert frame["type"] == "run_accepted", frame
                return str(frame["run_id"])
            kept.append(frame)


async def events_until_done(
    ws: ClientConnection, run_ids: set[str], timeout: float = 60
) -> dict[str, list[dict[str, Any]]]:
    """Event frames of ``run_ids`` until each has its ``agent_completed``."""
    by_run: dict[str, list[dict[str, Any]]] = {run_id: [] for run_id in run_ids}
    pending = set(run_ids)
    async with asyncio.timeout(timeout):
        while pending:
            frame = await next_frame(ws)
            if frame.get("run_id") in by_run and "seq" in frame:
                by_run[frame["run_id"]].append(frame)
                if frame["type"] == "agent_completed":
                    pending.discard(frame["run_id"])
    return by_run


def check_whole(events: list[dict[str, Any]]) -> None:
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), events
    assert events[0]["type"] == "agent_started"
    assert [e["type"] for e in events].count("agent_completed") == 1
    assert events[-1]["type"] == "agent_completed"


async def _one_user_quits_another_goes_on(served: Served) -> None:
    bob = await served.ws("bob")
    alice = await served.ws("alice")
    bob_run = await start_run(bob, "slowpoke", seconds=2.0)
    cases = [
        ("tool", "SystemExit"),
        ("tool", "KeyboardInterrupt"),
        ("agent", "SystemExit"),
        ("agent", "KeyboardInterrupt"),
    ]
    runs = {await start_run(alice, "quitter", where=w, kind=k): (w, k) for w, k in cases}
    by_run = await events_until_done(alice, set(runs))
    for run_id, (where, kind) in runs.items():
        events = by_run[run_id]
        check_whole(events)
        completed = events[-1]
        assert completed["status"] == "failed", completed
        error = [e for e in events if e["type"] == "agent_error"]
        assert len(error) == 1
        if where == "tool":
            done = [e for e in events if e["type"] == "tool_completed"]
            assert len(done) == 1 and done[0]["status"] == "error", events
            assert done[0]["error"].startswith(kind), done[0]
            assert error[0]["error_type"] == "ToolError"
            assert kind in completed["error"]
        else:
            assert error[0]["error_type"] == kind
            assert completed["error"].startswith(kind)
    assert served.proc.poll() is None, served.output  # the process goes on
    # Bob's run, in progress all along, completes on his socket, which stays open.
    bob_events = (await events_until_done(bob, {bob_run}))[bob_run]
    check_whole(bob_events)
    assert bob_events[-1]["status"] == "succeeded"
    again = await start_run(bob, "slowpoke", seconds=0)
    assert (await events_until_done(bob, {again}))[again][-1]["status"] == "succeeded"
    await alice.close()
    await bob.close()


def test_a_run_raising_systemexit_or_keyboardinterrupt_does_not_take_the_server_down(
    tmp_path: Path,
) -> None:
    with serve(tmp_path, AGENTENGINE_ENGINE__DRAIN_TIMEOUT="5") as served:
        asyncio.run(_one_user_quits_another_goes_on(served))
        served.proc.send_signal(signal.SIGTERM)
        assert served.wait(60) == 0, served.output
    assert "run failed" in served.output


async def _stubborn_runs_until_sigterm(
    served: Served, users: int, runs_each: int, agent: str, **run_input: Any
) -> tuple[dict[str, list[dict[str, Any]]], list[Any]]:
    sockets = [await served.ws(f"user{i}") for i in range(users)]
    run_ids = [
        {await start_run(ws, agent, **run_input) for _ in range(runs_each)} for ws in sockets
    ]
    for ws, ids in zip(sockets, run_ids, strict=True):  # every run is going
        seen: set[str] = set()
        got: list[dict[str, Any]] = []
        async with asyncio.timeout(30):
            while seen != ids:
                frame = await next_frame(ws)
                got.append(frame)
                if frame.get("type") == "agent_thinking":
                    seen.add(frame["run_id"])
        _BACKLOG.setdefault(id(ws), [])[:0] = got  # events_until_done reads them again
    served.proc.send_signal(signal.SIGTERM)
    by_run: dict[str, list[dict[str, Any]]] = {}
    closes = []
    for ws, ids in zip(sockets, run_ids, strict=True):
        by_run.update(await events_until_done(ws, ids, timeout=90))
        try:
            async with asyncio.timeout(60):
                while True:
                    await ws.recv()
        except ConnectionClosed as exc:
            closes.append(exc.rcvd)
    return by_run, closes


def test_sigterm_cancels_runs_at_the_drain_deadline_even_those_ignoring_cancellation(
    tmp_path: Path,
) -> None:
    env = {
        "AGENTENGINE_ENGINE__DRAIN_TIMEOUT": "1",
        "AGENTENGINE_ENGINE__CLOSE_TIMEOUT": "1",
        "AGENTENGINE_ENGINE__MAX_CONCURRENT_PER_USER": "10",
    }
    with serve(tmp_path, **env) as served:
        # 20 runs of 30 s that catch every cancellation: without a bounded shutdown they all
        # ended succeeded after 30 s.
        by_run, closes = asyncio.run(
            _stubborn_runs_until_sigterm(served, 2, 10, "stubborn", seconds=30)
        )
        assert served.wait(60) == 0, served.output
    assert len(by_run) == 20
    for events in by_run.values():
        check_whole(events)
        assert events[-1]["status"] == "cancelled", events[-1]
        assert "did not stop" in events[-1]["error"]
    assert all(close is not None and close.code == 1001 for close in closes), closes
    assert "run did not stop after being cancelled; abandoned" in served.output


def test_an_agent_that_never_stops_does_not_make_sigterm_hang(tmp_path: Path) -> None:
    env = {"AGENTENGINE_ENGINE__DRAIN_TIMEOUT": "0.5", "AGENTENGINE_ENGINE__CLOSE_TIMEOUT": "0.5"}
    with serve(tmp_path, **env) as served:
        by_run, _ = asyncio.run(_stubborn_runs_until_sigterm(served, 1, 2, "stubborn"))
        assert served.wait(60) == 0, served.output
    assert [events[-1]["status"] for events in by_run.values()] == ["cancelled"] * 2


@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT])
def test_a_second_signal_exits_at_once(tmp_path: Path, second: signal.Signals) -> None:
    env = {"AGENTENGINE_ENGINE__DRAIN_TIMEOUT": "600"}
    with serve(tmp_path, **env) as served:

        async def start() -> None:
            ws = await served.ws("alice")
            await start_run(ws, "slowpoke", seconds=600)
            await recv_until(ws, lambda f: f.get("type") == "agent_thinking")

        asyncio.run(start())
        served.proc.send_signal(signal.SIGTERM)
        served.wait_for_line("shutting down: draining runs")
        served.proc.send_signal(second)
        code = served.wait(30)  # the drain would take 600 s
    assert code != 0, served.output
    assert "exiting at once" in served.output


async def _cancel_swallowing_runs(served: Served) -> tuple[dict[str, Any], dict[str, Any]]:
    token = served.token("alice")
    headers = {"Authorization": f"Bearer {token}"}
    base = f"http://127.0.0.1:{served.port}"
    ws = await served.ws("alice")
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        r = await client.post("/v1/runs", json={"agent": "swallower"}, headers=headers)
        rest_run = r.json()["run_id"]
        ws_run = await start_run(ws, "swallower")
        seen: set[str] = set()
        async with asyncio.timeout(30):
            while seen != {rest_run, ws_run}:
                frame = await next_frame(ws)
                if frame.get("type") == "agent_thinking":
                    seen.add(frame["run_id"])
        rest = (await client.post(f"/v1/runs/{rest_run}/cancel", headers=headers)).json()
    await ws.send(json.dumps({"type": "cancel", "run_id": ws_run}))
    frames = await recv_until(ws, lambda f: f.get("type") == "cancel_done")
    await ws.close()
    return rest, frames[-1]


def test_rest_and_websocket_cancel_report_cancelled_when_the_agent_swallows_it(
    tmp_path: Path,
) -> None:
    with serve(tmp_path) as served:
        rest, ws_reply = asyncio.run(_cancel_swallowing_runs(served))
        served.proc.send_signal(signal.SIGTERM)
        assert served.wait(60) == 0, served.output
    assert rest["status"] == "cancelled", rest
    assert ws_reply["status"] == "cancelled", ws_reply
