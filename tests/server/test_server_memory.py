"""Memory bounds of the server's streaming layer: the frame cache and each connection's send
buffer hold at most their configured bytes, whatever the size and number of events."""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from agentengine import AgentThinkingEvent, ExecutionEngineFactory
from agentengine_server import ServerSettings, create_app
from agentengine_server.memory import can_trim_heap
from server_helpers import (
    SECRET,
    eventually,
    http,
    make_token,
    recv_until,
    running_server,
    serve_process,
    small_socket,
    wait_run,
)
from websockets.asyncio.client import connect

MiB = 1024 * 1024


def _big_event(n: int, size: int) -> AgentThinkingEvent:
    return AgentThinkingEvent(
        run_id="r-1", user_id=f"user-{n % 7}", thread_id="t-1", agent="a", seq=n + 1,
        ts=datetime.now(UTC), text=f"{n:08d}" + "x" * size, step=1, cursor=str(n),
    )  # fmt: skip


def test_frame_cache_holds_at_most_its_byte_bound() -> None:
    """Events of up to event_max_bytes (256 KiB) through the server's encoder: the frames it
    keeps for reuse stay within `frame_cache_bytes`, not 8,192 frames of any size."""
    settings = ServerSettings()
    factory = ExecutionEngineFactory(load_entrypoints=False, idle_ttl=None)
    encoder = create_app(factory, secret=SECRET, settings=settings).state.agentengine.encoder
    bound = settings.frame_cache_bytes
    total = 0
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        n = 0
        while total < bound * 2:  # twice the bound through the cache
            frame = encoder.encode(_big_event(n, 256 * 1024))
            total += len(frame.text)
            n += 1
        del frame
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert total > bound * 2
    assert kept <= bound + MiB, f"the frame cache kept {kept / MiB:.1f} MiB, bound {bound / MiB}"
    assert 0 < encoder.retained_bytes <= bound
    # A frame larger than the whole bound is encoded but not kept.
    small = ServerSettings(frame_cache_bytes=64 * 1024)
    tiny = create_app(factory, secret=SECRET, settings=small).state.agentengine.encoder
    big = _big_event(1, 100 * 1024)
    assert tiny.encode(big) is not tiny.encode(big)
    assert tiny.retained_bytes == 0


async def test_a_connection_that_does_not_read_buffers_at_most_send_buffer_bytes() -> None:
    """A WebSocket client that stops reading while its user's runs emit large events: its
    buffer stops growing at `send_buffer_bytes` (the connection catches up from the sink
    later), long before `send_buffer` frames; nothing is lost for a reading client."""
    limit = MiB
    settings = ServerSettings(
        send_buffer=1024,
        send_buffer_bytes=limit,
        slow_client_timeout=60,
        shutdown_flush_timeout=0.5,
    )
    count, size = 200, 100_000  # 20 MB of events: more than loopback socket buffers hold
    # The sink keeps all of it, so the client can catch up on everything.
    with running_server(settings=settings, event_retention_bytes=64 * MiB) as srv:
        stalled = await connect(
            srv.ws_url,
            sock=small_socket(srv.port),
            subprotocols=["bearer", make_token("alice")],  # type: ignore[list-item]
            max_queue=1,
            compression=None,
            open_timeout=20,
            close_timeout=0.1,
        )
        headers = srv.auth("alice")
        async with http(srv) as client:
            r = await client.post(
                "/v1/runs",
                json={"agent": "chatty", "input": {"count": count, "size": size}},
                headers=headers,
            )
            assert r.status_code == 202, r.text
            assert (await wait_run(client, r.json()["run_id"], headers))["status"] == "succeeded"

        def buffered() -> int:
            (conn,) = srv.state.connections
            return sum(len(f.text) for f in list(conn.pump._frames))

        await eventually(lambda: buffered() > 0, what="frames buffered for the stalled client")
        await asyncio.sleep(0.5)  # let anything still on its way reach the buffer
        assert buffered() <= limit + size + 1024, f"{buffered() / MiB:.1f} MiB buffered"
        # Reading again, the client gets every event: the rest came from the sink.
        frames = await recv_until(stalled, lambda f: f.get("type") == "agent_completed", 60)
        assert [f.get("seq") for f in frames] == list(range(1, count + 3))
        await stalled.close()


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _gauge(port: int, name: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


async def _runs(port: int, jobs: list[tuple[str, str]], concurrency: int) -> None:
    queue = iter(jobs)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:

        async def worker() -> None:
            for user, text in queue:
                headers = {"Authorization": f"Bearer {make_token(user)}"}
                body = {"agent": "echo", "input": {"text": text}}
                r = await client.post("/v1/runs", json=body, headers=headers)
                assert r.status_code == 202, r.text
                await wait_run(client, r.json()["run_id"], headers)

        await asyncio.gather(*(worker() for _ in range(concurrency)))


@pytest.mark.skipif(
    not Path("/proc/self/status").exists() or not can_trim_heap(),
    reason="reads /proc; returning heap memory needs glibc's malloc_trim",
)
def test_memory_freed_by_the_ttl_sweep_goes_back_to_the_os(tmp_path: Path) -> None:
    """A real `agentengine serve`: one user's large runs (their records held until the TTL),
    then small runs of many users on top. Once the TTL forgot the large records, the
    server's RSS comes down by most of their size: the housekeeping loop returns free heap
    pages to the OS (glibc keeps them otherwise: the freed records are scattered below live
    data)."""
    env = {
        "AGENTENGINE_JWT_SECRET": SECRET,
        "AGENTENGINE_SERVER__FINISHED_RUNS_TTL": "4",
        "AGENTENGINE_ENGINE__EVENT_RETENTION_BYTES": str(MiB),  # events hold little
        "AGENTENGINE_ENABLE_PLUGINS": "demo",  # the echo agent, on a production server
    }
    big = [("big", f"{i:06d}" + "x" * 200_000) for i in range(150)]  # 30 MB of records
    small = [(f"user-{i % 50}", f"hello {i}") for i in range(300)]
    with serve_process(tmp_path, env=env) as (proc, port):
        asyncio.run(_runs(port, big, 4))
        held = _gauge(port, "agentengine_server_finished_runs_bytes")
        asyncio.run(_runs(port, small, 8))  # live data above the records in the heap
        loaded = _rss(proc.pid)
        assert held > 30e6
        deadline = time.monotonic() + 30
        while _gauge(port, "agentengine_server_run_table_users") > 0:  # the TTL passed
            assert time.monotonic() < deadline, "the TTL sweep did not forget the users"
            time.sleep(0.2)
        time.sleep(2.5)  # the housekeeping loop's next turn (every TTL / 2) trims
        settled = _rss(proc.pid)
    freed = loaded - settled
    assert freed > held / 2, (
        f"RSS {loaded / MiB:.0f} -> {settled / MiB:.0f} MiB after {held / MiB:.0f} MiB of "
        "records were forgotten"
    )


async def test_idle_users_event_logs_are_dropped_and_a_resume_gets_events_lost(
    tmp_path: Path,
) -> None:
    """A real `agentengine serve` with `event_log_idle_seconds` short: the event logs of users
    whose runs ended and who have no stream open are dropped (the retained-bytes gauge goes to
    0); one of them coming back with an old cursor is told it lost events, then gets its new
    ones. A user with a stream open keeps its log."""
    env = {
        "AGENTENGINE_JWT_SECRET": SECRET,
        "AGENTENGINE_ENGINE__EVENT_LOG_IDLE_SECONDS": "0.3",
        "AGENTENGINE_ENABLE_PLUGINS": "demo",  # the echo agent, on a production server
    }
    with serve_process(tmp_path, env=env) as (_proc, port):
        base = f"http://127.0.0.1:{port}"
        ws_base = f"ws://127.0.0.1:{port}/v1/ws"
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:

            async def run(user: str) -> None:
                headers = {"Authorization": f"Bearer {make_token(user)}"}
                body = {"agent": "echo", "input": {"text": f"hello {user}"}}
                r = await client.post("/v1/runs", json=body, headers=headers)
                assert r.status_code == 202, r.text
                assert (await wait_run(client, r.json()["run_id"], headers))["status"] == (
                    "succeeded"
                )

            # reader keeps a stream open throughout; its first frame gives a cursor to resume.
            reader = await connect(
                ws_base, subprotocols=["bearer", make_token("reader")], open_timeout=20
            )
            await run("reader")
            await recv_until(reader, lambda f: f.get("type") == "agent_completed")
            readers_bytes = _gauge(port, "agentengine_events_retained_bytes")
            assert readers_bytes > 0
            for i in range(20):
                await run(f"user-{i}")
            first = await connect(
                ws_base + "?after=0", subprotocols=["bearer", make_token("user-0")]
            )
            frames = await recv_until(first, lambda f: f.get("type") == "agent_completed")
            await first.close()
            old_cursor = frames[0]["cursor"]
            assert _gauge(port, "agentengine_events_retained_bytes") > 20 * readers_bytes / 2
            deadline = time.monotonic() + 30
            while True:  # bounded: the sweep runs every 0.15 s
                await asyncio.sleep(0.2)
                retained = _gauge(port, "agentengine_events_retained_bytes")
                if retained == readers_bytes:  # only the log of reader, who is streaming
                    break
                assert time.monotonic() < deadline, f"idle logs not dropped ({retained} bytes)"
            await run("user-0")
            back = await connect(
                ws_base + f"?after={old_cursor}", subprotocols=["bearer", make_token("user-0")]
            )
            frames = await recv_until(back, lambda f: f.get("type") == "agent_completed")
            await back.close()
            assert frames[0]["type"] == "events_lost", frames[0]
            assert frames[0]["after"] == old_cursor
            assert frames[1]["type"] == "agent_started"
            assert frames[-1]["status"] == "succeeded"
            await reader.close()
