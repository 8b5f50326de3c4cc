"""Memory bounds of the server's streaming layer: the frame cache and each connection's send
buffer hold at most their configured bytes, whatever the size and number of events."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from datetime import UTC, datetime

from agentengine import AgentThinkingEvent, ExecutionEngineFactory
from agentengine_server import ServerSettings, create_app
from server_helpers import (
    SECRET,
    eventually,
    http,
    make_token,
    recv_until,
    running_server,
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
