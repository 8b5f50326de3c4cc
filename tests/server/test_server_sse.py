"""Server-Sent Events against a real server: ids are cursors, Last-Event-ID resumes."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import structlog
from invariants import cursor_number
from server_helpers import (
    RunningServer,
    check_run_sequences,
    http,
    make_token,
    running_server,
    sse_items,
    wait_run,
)


async def start(client: httpx.AsyncClient, headers: dict[str, str], agent: str, **inp: Any) -> str:
    r = await client.post("/v1/runs", json={"agent": agent, "input": inp}, headers=headers)
    assert r.status_code == 202, r.text
    return str(r.json()["run_id"])


async def test_sse_streams_events_with_cursor_ids(srv: RunningServer) -> None:
    headers = srv.auth("alice")
    async with http(srv) as client, client.stream("GET", "/v1/events", headers=headers) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        run_id = await start(client, headers, "researcher", question="isolation")
        got = []
        async with asyncio.timeout(20):
            async for item in sse_items(resp):
                got.append(item)
                if item["data"]["type"] == "agent_completed":
                    break
    events = [i["data"] for i in got]
    assert {e["run_id"] for e in events} == {run_id}
    check_run_sequences(events)
    assert [i["id"] for i in got] == [e["cursor"] for e in events]
    assert "event" not in got[0]  # plain message events: the type is in the data


async def test_sse_resume_with_last_event_id_loses_and_repeats_nothing(srv: RunningServer) -> None:
    headers = srv.auth("alice")
    async with http(srv) as client:
        first: list[dict[str, Any]] = []
        async with client.stream("GET", "/v1/events", headers=headers) as resp:
            run_id = await start(client, headers, "chatty", count=80, delay=0.005)
            async with asyncio.timeout(20):
                async for item in sse_items(resp):
                    first.append(item)
                    if len(first) == 15:
                        break  # the connection drops mid-run
        last_id = first[-1]["id"]
        await asyncio.sleep(0.1)  # events keep coming while we are away
        second: list[dict[str, Any]] = []
        resumed = {**headers, "Last-Event-ID": last_id}
        async with client.stream("GET", "/v1/events", headers=resumed) as resp:
            async with asyncio.timeout(20):
                async for item in sse_items(resp):
                    second.append(item)
                    if item["data"]["type"] == "agent_completed":
                        break
    events = [i["data"] for i in first + second]
    assert {e["run_id"] for e in events} == {run_id}
    check_run_sequences(events)  # 1..82 exactly once each, in order
    assert len(events) == 82
    ids = [cursor_number(i["id"]) for i in first + second]
    assert ids == list(range(ids[0], ids[0] + 82))


async def test_sse_token_in_query_and_after_parameter(srv: RunningServer) -> None:
    headers = srv.auth("alice")
    async with http(srv) as client:
        run_id = await start(client, headers, "echo", text="q")
        await asyncio.sleep(0.2)
        params = {"token": make_token("alice"), "after": "0"}
        async with client.stream("GET", "/v1/events", params=params) as resp:
            assert resp.status_code == 200
            got = []
            async with asyncio.timeout(20):
                async for item in sse_items(resp):
                    got.append(item["data"])
                    if item["data"]["type"] == "agent_completed":
                        break
    assert [e["run_id"] for e in got] == [run_id] * 3


async def test_sse_forwards_a_gap_when_retention_dropped_events() -> None:
    with running_server(event_retention=5) as srv:
        headers = srv.auth("alice")
        async with http(srv) as client:
            run_id = await start(client, headers, "chatty", count=18)
            await asyncio.sleep(0.3)
            epoch = srv.state.factory.events.epoch
            resumed = {**headers, "Last-Event-ID": f"{epoch}-2"}
            async with client.stream("GET", "/v1/events", headers=resumed) as resp:
                got = []
                async with asyncio.timeout(20):
                    async for item in sse_items(resp):
                        got.append(item)
                        if item["data"]["type"] == "agent_completed":
                            break
    gap = got[0]
    assert gap["data"] == {
        "type": "events_lost",
        "user_id": "alice",
        "after": f"{epoch}-2",
        "cursor": f"{epoch}-15",
        "missed": 13,
    }
    assert gap["id"] == f"{epoch}-15"
    assert [i["data"]["seq"] for i in got[1:]] == [16, 17, 18, 19, 20]
    assert {i["data"]["run_id"] for i in got[1:]} == {run_id}
    assert srv.state.metrics.gaps_delivered == 1


async def test_sse_bad_cursor_is_reported(srv: RunningServer) -> None:
    headers = {**srv.auth("alice"), "Last-Event-ID": "bogus"}
    with structlog.testing.capture_logs() as logs:
        async with http(srv) as client, client.stream("GET", "/v1/events", headers=headers) as r:
            async with asyncio.timeout(20):
                got = [item async for item in sse_items(r)]
    assert got[0]["event"] == "error"
    assert got[0]["data"]["error"] == "invalid_cursor"
    assert "bogus" in got[0]["data"]["message"]
    # A client's mistake, not a failure of the server: logged at info, never as an error.
    refused = [e for e in logs if e["event"] == "resume cursor refused"]
    assert refused and refused[0]["log_level"] == "info" and refused[0]["user_id"] == "alice"
    assert not [e for e in logs if e["log_level"] == "error"], logs


async def test_slow_sse_client_is_cut_off_and_resumes_with_last_event_id() -> None:
    from agentengine_server import ServerSettings

    count = 2000  # x 4 KB: more than loopback socket buffers hold, so the server backs up
    settings = ServerSettings(send_buffer=32, slow_client_timeout=0.3)
    with running_server(settings=settings) as srv:
        headers = srv.auth("alice")
        async with http(srv) as client, client.stream("GET", "/v1/events", headers=headers) as r:
            # Read nothing while the run emits everything.
            run_id = await start(client, headers, "chatty", count=count, size=4000)
            async with http(srv) as other:
                assert (await wait_run(other, run_id, headers))["status"] == "succeeded"
            await asyncio.sleep(1.0)  # longer than slow_client_timeout: the buffer overflowed
            async with asyncio.timeout(30):  # what had reached us, then the stream ends
                first = [item async for item in sse_items(r)]
        assert 0 < len(first) < count + 2
        assert srv.state.metrics.slow_client_closes == 1
        resumed = {**headers, "Last-Event-ID": first[-1]["id"]}
        rest: list[dict[str, Any]] = []
        async with http(srv) as client, client.stream("GET", "/v1/events", headers=resumed) as r:
            async with asyncio.timeout(30):
                async for item in sse_items(r):
                    rest.append(item)
                    if item["data"]["type"] == "agent_completed":
                        break
    events = [i["data"] for i in first + rest]
    check_run_sequences(events)
    assert len(events) == count + 2
