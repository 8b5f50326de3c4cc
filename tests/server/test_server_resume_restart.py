"""Resuming across a restart of a real ``agentengine serve``: a cursor of the earlier process is
answered with ``events_lost`` (``missed`` unknown), then the new process's events, never a
silent skip of what the new process numbered below that cursor; and a new stream without a
cursor starts live, skipping what is retained."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import httpx
from server_helpers import dev_token, serve_process, sse_items, wait_run
from websockets.asyncio.client import connect

PLUGIN = """
from agentengine import agent, hookimpl


@agent(name="steps")
async def steps(run, count: int) -> int:
    for i in range(count):
        await run.think(f"step {i}")
    return count


class _Plugin:
    @hookimpl
    def agentengine_register_agents(self, registry):
        registry.add(steps)


plugin = _Plugin()
"""


async def run_steps(client: httpx.AsyncClient, token: str, count: int) -> str:
    """Start ``steps`` and wait for it to succeed; its run id."""
    headers = {"Authorization": f"Bearer {token}"}
    r = await client.post(
        "/v1/runs", json={"agent": "steps", "input": {"count": count}}, headers=headers
    )
    assert r.status_code == 202, r.text
    run_id = str(r.json()["run_id"])
    assert (await wait_run(client, run_id, headers))["status"] == "succeeded"
    return run_id


async def read_sse(
    client: httpx.AsyncClient, token: str, last_event_id: str | None, until_run: str
) -> list[dict[str, Any]]:
    """SSE items, resuming after ``last_event_id``, up to ``until_run``'s terminal event."""
    headers = {"Authorization": f"Bearer {token}"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    got: list[dict[str, Any]] = []
    async with asyncio.timeout(30), client.stream("GET", "/v1/events", headers=headers) as resp:
        assert resp.status_code == 200
        async for item in sse_items(resp):
            got.append(item)
            data = item["data"]
            if data["type"] == "agent_completed" and data["run_id"] == until_run:
                return got
    raise AssertionError(got)


def stop(proc: Any) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)


async def test_a_cursor_from_before_a_restart_gets_events_lost_then_the_new_events(
    tmp_path: Path,
) -> None:
    # First life: alice reads a run of 8 events (cursors of that process).
    with serve_process(tmp_path, "--dev", plugins={"restartplug": PLUGIN}) as (proc, port):
        token = dev_token(port, "alice")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            first_run = await run_steps(client, token, 6)
            first = await read_sse(client, token, "0", first_run)
        stop(proc)
    last_id = first[-1]["id"]
    assert [i["data"]["seq"] for i in first] == list(range(1, 9))

    # Second life: two runs (16 events) before alice comes back with her cursor.
    with serve_process(tmp_path, "--dev", plugins={"restartplug": PLUGIN}) as (proc, port):
        token = dev_token(port, "alice")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            runs = [await run_steps(client, token, 6), await run_steps(client, token, 6)]
            resumed = await read_sse(client, token, last_id, runs[1])
            # Over a WebSocket the same: ?after= the earlier process's cursor.
            ws_url = f"ws://127.0.0.1:{port}/v1/ws?after={last_id}"
            async with connect(ws_url, subprotocols=["bearer", token], open_timeout=20) as ws:  # type: ignore[list-item]
                frames: list[dict[str, Any]] = []
                async with asyncio.timeout(30):
                    while (
                        not frames
                        or frames[-1].get("run_id") != runs[1]
                        or frames[-1]["type"] != "agent_completed"
                    ):
                        frames.append(json.loads(await ws.recv()))
        stop(proc)

    gap = resumed[0]
    assert gap["data"]["type"] == "events_lost", resumed[:3]
    assert gap["data"]["after"] == last_id
    assert gap["data"]["missed"] is None  # the earlier process's history: gone, count unknown
    assert gap["id"] == gap["data"]["cursor"] != last_id
    # Then every event the new process retained: both runs whole, none skipped.
    events = [i["data"] for i in resumed[1:]]
    assert [(e["run_id"], e["seq"]) for e in events] == [
        (run_id, seq) for run_id in runs for seq in range(1, 9)
    ]
    assert [i["id"] for i in resumed[1:]] == [e["cursor"] for e in events]
    assert frames[0] == gap["data"]
    assert frames[1:] == events


async def test_a_new_stream_without_a_cursor_starts_live(tmp_path: Path) -> None:
    with serve_process(tmp_path, "--dev", plugins={"restartplug": PLUGIN}) as (proc, port):
        token = dev_token(port, "alice")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            await run_steps(client, token, 3)  # retained, before the stream opens
            headers = {"Authorization": f"Bearer {token}"}
            async with client.stream("GET", "/v1/events", headers=headers) as resp:
                assert resp.status_code == 200
                live_run = await run_steps(client, token, 2)
                got: list[dict[str, Any]] = []
                async with asyncio.timeout(30):
                    async for item in sse_items(resp):
                        got.append(item["data"])
                        if item["data"]["type"] == "agent_completed":
                            break
        stop(proc)
    assert [(e["run_id"], e["seq"]) for e in got] == [(live_run, seq) for seq in range(1, 5)]
