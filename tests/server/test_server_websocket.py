"""The WebSocket API against a real server: runs, cancels, resumes, bad frames."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from invariants import cursor_number
from server_helpers import (
    RunningServer,
    check_run_sequences,
    eventually,
    http,
    recv_json,
    recv_until,
    running_server,
    ws_connect,
)
from websockets.exceptions import ConnectionClosed


def _terminal(run_id: str):  # type: ignore[no-untyped-def]
    return lambda f: f.get("type") == "agent_completed" and f.get("run_id") == run_id


async def test_run_frame_streams_the_run_with_cursors(srv: RunningServer) -> None:
    async with await ws_connect(srv, "alice") as ws:
        await ws.send(
            json.dumps(
                {"type": "run", "agent": "researcher", "input": {"question": "plugins"}, "id": "r1"}
            )
        )
        frames = await recv_until(ws, lambda f: f.get("type") == "agent_completed")
        accepted = [f for f in frames if f["type"] == "run_accepted"]
        assert len(accepted) == 1
        assert accepted[0]["id"] == "r1"
        run_id = accepted[0]["run_id"]
        events = [f for f in frames if "seq" in f]
        assert {e["run_id"] for e in events} == {run_id}
        check_run_sequences(events)
        assert {e["type"] for e in events} == {
            "agent_started",
            "agent_thinking",
            "tool_executing",
            "tool_completed",
            "agent_completed",
        }
        assert all(e["user_id"] == "alice" for e in events)
        cursors = [cursor_number(e["cursor"]) for e in events]
        assert cursors == sorted(cursors)
        assert len(set(cursors)) == len(cursors)
        assert events[-1]["status"] == "succeeded"
        assert "for alice" in events[-1]["output"]


async def test_cancel_frame(srv: RunningServer) -> None:
    async with await ws_connect(srv, "alice") as ws:
        await ws.send(json.dumps({"type": "run", "agent": "sleeper", "input": {"seconds": 30}}))
        frames = await recv_until(ws, lambda f: f.get("type") == "run_accepted")
        run_id = frames[-1]["run_id"]
        await ws.send(json.dumps({"type": "cancel", "run_id": run_id}))
        frames = await recv_until(ws, lambda f: f.get("type") == "cancel_done")
        assert frames[-1] == {"type": "cancel_done", "run_id": run_id, "status": "cancelled"}
        terminal = [f for f in frames if f.get("type") == "agent_completed"]
        assert terminal
        assert terminal[0]["status"] == "cancelled"


async def test_resume_frame_replays_after_a_cursor(srv: RunningServer) -> None:
    async with await ws_connect(srv, "alice") as ws:
        await ws.send(json.dumps({"type": "run", "agent": "chatty", "input": {"count": 20}}))
        frames = await recv_until(ws, lambda f: f.get("type") == "agent_completed")
        events = [f for f in frames if "seq" in f]
        assert len(events) == 22
        middle = events[9]["cursor"]
        await ws.send(json.dumps({"type": "resume", "after": middle, "id": 3}))
        ack = await recv_json(ws)
        assert ack == {"type": "resumed", "after": middle, "id": 3}
        replay = [await recv_json(ws) for _ in range(12)]
        assert replay == events[10:]
        # A bad cursor is answered with an error and the stream carries on where it was.
        await ws.send(json.dumps({"type": "resume", "after": "not-a-cursor"}))
        reply = await recv_until(ws, lambda f: f.get("type") == "error")
        assert reply[-1]["error"] == "invalid_cursor"
        assert "not-a-cursor" in reply[-1]["message"]
        await ws.send(json.dumps({"type": "run", "agent": "echo", "input": {"text": "after"}}))
        frames = await recv_until(ws, lambda f: f.get("type") == "agent_completed")
        assert frames[-1]["output"] == "after"
        seqs = [f for f in frames if f.get("type") == "agent_started"]
        assert len(seqs) == 1  # nothing of the old runs was repeated


async def test_connect_with_after_resumes(srv: RunningServer) -> None:
    async with await ws_connect(srv, "alice") as ws:
        await ws.send(json.dumps({"type": "run", "agent": "chatty", "input": {"count": 5}}))
        frames = await recv_until(ws, lambda f: f.get("type") == "agent_completed")
    events = [f for f in frames if "seq" in f]
    async with await ws_connect(srv, "alice", after=events[2]["cursor"]) as ws:
        replay = [await recv_json(ws) for _ in range(len(events) - 3)]
    assert replay == events[3:]


BAD_FRAMES = [
    ("{not json", "invalid_json", "not valid JSON"),
    ("[1, 2]", "invalid_frame", "expected a JSON object"),
    ('{"type": "dance"}', "invalid_frame", "run, cancel, resume"),
    ('{"agent": "echo"}', "invalid_frame", "unknown frame type None"),
    ('{"type": "run"}', "invalid_request", "'agent'"),
    ('{"type": "run", "agent": "nope"}', "unknown_agent", "researcher"),
    ('{"type": "run", "agent": "echo", "input": {}}', "invalid_input", "text"),
    ('{"type": "run", "agent": "echo", "input": "hi"}', "invalid_input", "object"),
    ('{"type": "cancel"}', "invalid_frame", "'run_id'"),
    ('{"type": "resume", "after": [1]}', "invalid_frame", "cursor"),
]


async def test_malformed_frames_get_an_error_and_the_connection_stays(srv: RunningServer) -> None:
    async with await ws_connect(srv, "alice") as ws:
        for frame, code, needle in BAD_FRAMES:
            await ws.send(frame)
            reply = await recv_json(ws)
            assert reply["type"] == "error", (frame, reply)
            assert reply["error"] == code, (frame, reply)
            assert needle in reply["message"], (frame, reply)
        await ws.send(b"\x00\x01")
        reply = await recv_json(ws)
        assert reply["error"] == "invalid_frame"
        assert "binary" in reply["message"]
        # Still open and working.
        await ws.send(json.dumps({"type": "run", "agent": "echo", "input": {"text": "ok"}}))
        frames = await recv_until(ws, lambda f: f.get("type") == "agent_completed")
        assert frames[-1]["output"] == "ok"


#: Run requests a client may get wrong, with what the answer's message names.
BAD_RUN_REQUESTS: list[tuple[dict[str, Any], str]] = [
    ({}, "agent"),
    ({"agent": 5}, "'agent' must be a string, got int"),
    ({"agent": "echo", "thread_id": 5}, "'thread_id' must be a string, got int"),
    ({"agent": "echo", "inptu": {"text": "hi"}}, "'inptu'"),
    ({"agent": "echo", "input": [1]}, "'input' must be an object, got list"),
    ({"agent": "echo", "input": "hi"}, "'input' must be an object, got str"),
    ({"agent": "nope"}, "researcher"),
    ({"agent": "echo", "input": {}}, "text"),
    ({"agent": "echo", "input": {"text": "hi"}, "thread_id": "default"}, "thread_id"),
]


async def test_run_requests_are_checked_alike_over_http_and_websocket(srv: RunningServer) -> None:
    """``POST /v1/runs`` and a ``run`` frame take the same fields and refuse the same mistakes
    with the same error codes; none of them starts a run."""
    async with http(srv) as client, await ws_connect(srv, "alice") as ws:
        for n, (request, needle) in enumerate(BAD_RUN_REQUESTS):
            r = await client.post("/v1/runs", json=request, headers=srv.auth("alice"))
            await ws.send(json.dumps({"type": "run", **request, "id": n}))
            frame = await recv_json(ws)
            assert frame["type"] == "error", (request, frame)
            assert frame["id"] == n
            assert r.status_code in (404, 422), (request, r.text)
            assert frame["error"] == r.json()["error"], (request, frame, r.json())
            assert needle in frame["message"], (request, frame)
            assert needle in r.json()["message"], (request, r.json())
        runs = await client.get("/v1/runs", headers=srv.auth("alice"))
        assert runs.json()["runs"] == []


async def _drain(ws: Any) -> None:
    async with asyncio.timeout(20):
        while True:
            await ws.recv()


async def test_oversize_frame_closes_with_1009(srv: RunningServer) -> None:
    ws = await ws_connect(srv, "alice", max_size=None)
    await ws.send(json.dumps({"type": "run", "agent": "echo", "input": {"text": "x" * 70_000}}))
    with pytest.raises(ConnectionClosed) as info:
        await _drain(ws)
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1009
    # A frame just under the limit is fine.
    async with await ws_connect(srv, "alice") as ok:
        await ok.send(json.dumps({"type": "run", "agent": "echo", "input": {"text": "y" * 60_000}}))
        frames = await recv_until(ok, lambda f: f.get("type") == "agent_completed")
        assert frames[-1]["output"] == "y" * 60_000


async def test_several_connections_of_one_user_all_get_its_events(srv: RunningServer) -> None:
    a1 = await ws_connect(srv, "alice")
    a2 = await ws_connect(srv, "alice")
    b = await ws_connect(srv, "bob")
    try:
        await a1.send(json.dumps({"type": "run", "agent": "echo", "input": {"text": "one"}}))
        run_id = (await recv_until(a1, lambda f: f.get("type") == "run_accepted"))[-1]["run_id"]
        got1 = [f for f in await recv_until(a1, _terminal(run_id)) if "seq" in f]
        got2 = [f for f in await recv_until(a2, _terminal(run_id)) if "seq" in f]
        assert {f["run_id"] for f in got2} == {run_id}
        check_run_sequences(got2)
        assert [f["seq"] for f in got2][-len(got1) :] == [f["seq"] for f in got1]
        # bob's connection got nothing of alice's run: the next frame it sees is its own.
        await b.send(json.dumps({"type": "run", "agent": "echo", "input": {"text": "bob"}}))
        frames = await recv_until(b, lambda f: f.get("type") == "agent_completed")
        assert all(f.get("user_id", "bob") == "bob" for f in frames)
        assert all(f.get("run_id") != run_id for f in frames)
    finally:
        for ws in (a1, a2, b):
            await ws.close()


async def test_metrics_count_websocket_clients_and_deliveries() -> None:
    with running_server() as srv:
        async with await ws_connect(srv, "alice") as ws:
            await ws.send(json.dumps({"type": "run", "agent": "echo", "input": {"text": "m"}}))
            await recv_until(ws, lambda f: f.get("type") == "agent_completed")
            metrics = srv.state.metrics
            assert metrics.clients_connected["ws"] == 1
            # Counted just after each send returns.
            await eventually(lambda: metrics.events_delivered["ws"] >= 3)
            await asyncio.sleep(0.1)
            assert metrics.events_delivered["ws"] == 3
        await eventually(lambda: srv.state.metrics.clients_connected["ws"] == 0)


async def test_connect_with_an_unusable_cursor_gets_an_error_and_1008(srv: RunningServer) -> None:
    ws = await ws_connect(srv, "alice", after="bogus")
    reply = await recv_json(ws)
    assert reply["error"] == "invalid_cursor"
    assert "bogus" in reply["message"]
    with pytest.raises(ConnectionClosed) as info:
        await _drain(ws)
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1008


async def test_frames_are_strict_json_even_for_nan_outputs(srv: RunningServer) -> None:
    def refuse(token: str) -> None:
        raise ValueError(f"non-standard JSON token {token}")

    async with await ws_connect(srv, "alice") as ws:
        await ws.send(json.dumps({"type": "run", "agent": "odd"}))
        async with asyncio.timeout(20):
            while True:
                frame = json.loads(await ws.recv(), parse_constant=refuse)
                if frame.get("type") == "agent_completed":
                    break
    assert frame["output"]["nan"] == "NaN"


class _LosingSink:
    """A sink whose subscriptions fail, like one that lost its backend."""

    def __init__(self) -> None:
        from agentengine import InMemoryEventSink

        self.inner = InMemoryEventSink()

    def publish(self, event: Any) -> None:
        self.inner.publish(event)

    async def subscribe(self, user_id: str, after: str | None = None) -> Any:
        raise RuntimeError("event backend unreachable")
        yield  # an async generator

    def latest_cursor(self, user_id: str) -> str | None:
        return self.inner.latest_cursor(user_id)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_failing_subscription_is_reported_and_closes_1011() -> None:
    with running_server(event_sink=_LosingSink()) as srv:
        ws = await ws_connect(srv, "alice")
        reply = await recv_json(ws)
        assert reply["error"] == "stream_failed"
        assert "unreachable" in reply["message"]
        with pytest.raises(ConnectionClosed) as info:
            await _drain(ws)
        assert info.value.rcvd is not None
        assert info.value.rcvd.code == 1011
        # Runs still work over HTTP; the stream failure hurt nothing else.
        from server_helpers import http, wait_run

        headers = srv.auth("alice")
        async with http(srv) as client:
            r = await client.post(
                "/v1/runs", json={"agent": "echo", "input": {"text": "x"}}, headers=headers
            )
            assert (await wait_run(client, r.json()["run_id"], headers))["status"] == "succeeded"
