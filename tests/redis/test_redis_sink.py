"""The Redis sink on a real redis-server: what only a shared, remote log has to get right
(idempotent appends, Redis going away, foreign cursors, many subscribers on one reader)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from agentengine import BaseEvent, EventGap, ExecutionEngineFactory
from agentengine_redis import RedisEventSink, RedisPlugin, RedisSettings
from agentengine_redis.layout import meta_key, stream_key
from agentengine_redis.scripts import APPEND
from invariants import thinking
from redis_server import RedisProcess, unique_prefix


def make_sink(server: RedisProcess, **options: Any) -> RedisEventSink:
    options.setdefault("key_prefix", unique_prefix())
    return RedisEventSink(RedisSettings(url=server.url, **options))


async def take(sink: Any, user: str, after: str | None, n: int, timeout: float = 10) -> list[Any]:
    items: list[Any] = []
    async with asyncio.timeout(timeout):
        async for item in sink.subscribe(user, after=after):
            items.append(item)
            if len(items) == n:
                break
    return items


async def test_a_retried_batch_is_appended_once(redis_process: RedisProcess) -> None:
    """The append script answers a batch it already applied (same publisher, same batch
    number) with the same first number and appends nothing: a write retried after a lost
    reply does not duplicate events."""
    sink = make_sink(redis_process)
    client = redis_process.client()
    try:
        p = sink.prefix
        keys = [stream_key(p, "alice"), meta_key(p, "alice")]
        head: list[Any] = ["pub1", 1, "0badc0de", 100, 60_000, 10, 60_000, f"{p}{{alice}}:run:"]
        args = [*head, 0, b'{"x":1}', 0, b'{"x":2}']
        first = client.evalsha(APPEND.sha, 2, *keys, *args) if _loaded(client) else None
        if first is None:
            client.script_load(APPEND.source)
            first = client.evalsha(APPEND.sha, 2, *keys, *args)
        again = client.evalsha(APPEND.sha, 2, *keys, *args)
        assert first[:2] == again[:2] == [b"0badc0de", 1]
        assert (first[2], again[2]) == (0, 1)
        assert client.xlen(keys[0]) == 2
        args[1] = 2  # the next batch of the same publisher is appended
        assert client.evalsha(APPEND.sha, 2, *keys, *args)[1] == 3
        assert client.xlen(keys[0]) == 4
        # Every entry carries the run attempt it was written by (fencing by attempt; 0: a
        # run not executed by a worker).
        assert all(fields[b"a"] == b"0" for _, fields in client.xrange(keys[0]))
    finally:
        client.close()
        await sink.aclose()


def _loaded(client: Any) -> bool:
    return bool(client.script_exists(APPEND.sha)[0])


async def test_cursor_of_another_log_is_answered_with_events_lost(
    redis_process: RedisProcess,
) -> None:
    """A cursor naming another log (another user's, or one Redis no longer has) is never read
    as a position in this one: the subscriber gets events_lost, then everything retained, and
    never another user's events."""
    sink = make_sink(redis_process)
    try:
        bob = [thinking("bob", seq) for seq in range(1, 6)]
        alice = [thinking("alice", seq) for seq in range(1, 3)]
        for event in [*bob, *alice]:
            sink.publish(event)
        await sink.flush()
        foreign = bob[3].cursor
        assert foreign is not None
        items = await take(sink, "alice", foreign, 3)
        assert isinstance(items[0], EventGap)
        assert items[0].after == foreign and items[0].missed is None
        assert [e.text for e in items[1:]] == ["alice-1", "alice-2"]
        # The log is flushed (a Redis restarted without its data): its cursors are foreign now.
        kept = alice[1].cursor
        client = redis_process.client()
        for key in client.scan_iter(f"{sink.prefix}*"):
            client.delete(key)
        client.close()
        sink.publish(thinking("alice", 3))
        await sink.flush()
        items = await take(sink, "alice", kept, 2)
        assert isinstance(items[0], EventGap) and items[0].after == kept
        assert isinstance(items[1], BaseEvent) and items[1].text == "alice-3"
        with pytest.raises(ValueError, match="invalid cursor 'alice-3'"):
            await take(sink, "alice", "alice-3", 1)
    finally:
        await sink.aclose()


async def test_two_hundred_subscribers_share_one_reader(redis_process: RedisProcess) -> None:
    """200 users subscribed in one process: every one gets its own events, through one
    blocking reader connection, and the pool never needs more than its bound."""
    sink = make_sink(redis_process, max_connections=8)
    users = [f"user{i:03d}" for i in range(200)]
    client = redis_process.client()
    try:
        tasks = [asyncio.create_task(take(sink, user, None, 2, timeout=30)) for user in users]
        await asyncio.sleep(0.5)
        for seq in (1, 2):
            for user in users:
                sink.publish(thinking(user, seq))
        results = await asyncio.wait_for(asyncio.gather(*tasks), 30)
        for user, items in zip(users, results, strict=True):
            assert [e.text for e in items] == [f"{user}-1", f"{user}-2"]
        ours = [
            c for c in client.client_list() if c["name"].startswith(f"agentengine-{sink.publisher}")
        ]
        assert len([c for c in ours if c["name"].endswith("-reader")]) == 1
        assert len(ours) <= 8 + 1, ours
    finally:
        client.close()
        await sink.aclose()


async def test_overflow_while_redis_is_down_becomes_events_lost(tmp_path: Path) -> None:
    """Redis unreachable: runs go on, the buffer keeps its bound, what it cannot hold is dropped,
    counted and, once Redis is back, delivered as events_lost with the exact count."""
    server = RedisProcess(tmp_path / "redis").start()
    sink = make_sink(server, buffer_events=5, batch_size=2, health_interval=0.1)
    try:
        sink.publish(thinking("alice", 1))
        await sink.flush()
        server.kill()
        for seq in range(2, 21):
            sink.publish(thinking("alice", seq))  # never blocks, never raises
        assert sink._buffered <= 5
        await _until(lambda: sink.reachable is False)
        assert sink.status()["ready"] is False
        dropped = sink.metrics["events_dropped"]
        assert dropped > 0
        server.start()
        await asyncio.wait_for(sink.flush(), 20)
        items = await take(sink, "alice", None, 1 + 19 - dropped + 1)
        events = [i for i in items if isinstance(i, BaseEvent)]
        gaps = [i for i in items if isinstance(i, EventGap)]
        assert sum(g.missed for g in gaps) == dropped
        assert len(events) + dropped == 20
        assert [e.seq for e in events] == sorted(e.seq for e in events)
        await _until(lambda: sink.reachable is True)
    finally:
        await sink.aclose()
        server.stop()


async def test_plugin_is_inactive_without_a_url_and_provides_the_sink_with_one(
    redis_process: RedisProcess,
) -> None:
    async with ExecutionEngineFactory(plugins=[RedisPlugin()], load_entrypoints=False) as f:
        assert type(f.events).__name__ == "InMemoryEventSink"
    plugin = RedisPlugin({"url": redis_process.url, "key_prefix": unique_prefix()})
    async with ExecutionEngineFactory(plugins=[plugin], load_entrypoints=False) as f:
        assert f.events is plugin.sink
        assert isinstance(f.events, RedisEventSink)
        await _until(lambda: plugin.agentengine_status()[0]["state"] == "reachable")
        status = plugin.agentengine_status()[0]
        assert status["version"] and "aof" in status["persistence"]


async def _until(predicate: Any, timeout: float = 20) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - state set by the sink's own tasks
            await asyncio.sleep(0.02)


async def test_a_subscriber_behind_the_readers_window_reads_the_rest_from_redis(
    redis_process: RedisProcess,
) -> None:
    """The reader keeps a bounded window of recent entries per user (1024 entries, 1 MiB); a
    subscriber that falls behind it catches up from Redis, which retains more: every event,
    in order, no events_lost."""
    sink = make_sink(redis_process)
    try:
        stream = sink.subscribe("alice")
        first = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.05)
        big = [thinking("alice", seq) for seq in range(1, 41)]
        for event in big:
            event.__dict__["text"] = f"{event.seq}:" + "x" * 100_000
            sink.publish(event)
        await sink.flush()
        assert (await asyncio.wait_for(first, 10)).seq == 1
        await asyncio.sleep(0.2)  # the reader took in all 40 (4 MB)
        assert sink._tail_bytes <= 1024 * 1024 + 101_000  # what it holds stays in its window
        rest = [await asyncio.wait_for(anext(stream), 10) for _ in range(39)]
        assert [e.seq for e in rest] == list(range(2, 41))
        await stream.aclose()
    finally:
        await sink.aclose()


async def test_redis_restarted_without_its_data_ends_streams_and_resume_says_events_lost(
    tmp_path: Path,
) -> None:
    """A Redis that comes back empty (no persistence): a live stream following the old log
    ends with an error instead of silently waiting for numbers the new log reuses, and
    resuming with the last cursor gets events_lost, then the new log."""
    server = RedisProcess(tmp_path / "first").start()
    sink = make_sink(server, health_interval=0.1)
    try:
        stream = sink.subscribe("alice")
        first = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.05)
        sink.publish(thinking("alice", 1))
        seen = await asyncio.wait_for(first, 10)
        server.kill()
        empty = RedisProcess(tmp_path / "second", port=server.port).start()  # no AOF there
        try:
            with pytest.raises(ConnectionError, match="gone from Redis"):
                await asyncio.wait_for(anext(stream), 20)
            sink.publish(thinking("alice", 2))
            items: list[Any] = []
            async with asyncio.timeout(10):
                async for item in sink.subscribe("alice", after=seen.cursor):
                    items.append(item)
                    if getattr(item, "text", None) == "alice-2":
                        break
            assert isinstance(items[0], EventGap) and items[0].after == seen.cursor
            # The new log may hold alice-1 again: when Redis died before its reply to the
            # append reached the sink, the retried batch was stored in the new log.
            assert [e.text for e in items[1:]] in (["alice-2"], ["alice-1", "alice-2"])
        finally:
            await sink.aclose()
            empty.stop()
    finally:
        server.stop()


def test_a_bad_redis_table_is_refused_naming_the_key() -> None:
    from agentengine import PluginLoadError

    with pytest.raises(PluginLoadError, match=r"table \[redis\]: redis.url: .*must start with"):
        ExecutionEngineFactory(
            plugins=[RedisPlugin()],
            load_entrypoints=False,
            strict_plugins=True,
            environ={"AGENTENGINE_REDIS__URL": "http://127.0.0.1:6379"},
        )
    with pytest.raises(PluginLoadError, match=r"redis.key_prefix: .*must not contain '\{'"):
        ExecutionEngineFactory(
            plugins=[RedisPlugin()],
            load_entrypoints=False,
            strict_plugins=True,
            environ={"AGENTENGINE_REDIS__URL": "redis://x", "AGENTENGINE_REDIS__KEY_PREFIX": "{a}"},
        )


async def test_blocking_reads_longer_than_the_socket_timeout_are_not_cut_short(
    redis_process: RedisProcess,
) -> None:
    """The reader blocks longer than the pool's reply timeout: its connection has a timeout of
    its own (BLOCK plus socket_timeout) and no retries, so an idle stream is neither an error
    nor a retried read, and the next event still arrives."""
    sink = make_sink(redis_process, block_ms=600, socket_timeout=0.3)
    try:
        follower = asyncio.create_task(take(sink, "alice", None, 1))
        await asyncio.sleep(1.5)  # two blocking reads time out on the server's side, idle
        sink.publish(thinking("alice", 1))
        assert [e.text for e in await asyncio.wait_for(follower, 10)] == ["alice-1"]
        assert sink.metrics["read_errors"] == 0
        assert sink.reachable is True
    finally:
        await sink.aclose()
