"""Cursors that name their log, the live start, and the sink protocol's typing.

A cursor of the in-memory sink is ``<epoch>-<n>`` with an epoch random per sink instance: a
cursor of another sink (an earlier process) or a bare number from before epochs is answered
with an ``events_lost`` item (``missed`` unknown), then what is retained, never a silent skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from agentengine import (
    LIVE,
    AgentThinkingEvent,
    EventGap,
    EventSink,
    ExecutionEngineFactory,
    InMemoryEventSink,
    StreamItem,
    hookimpl,
)
from agentengine.sinks.protocol import check_event_sink
from invariants import thinking


async def take(sink: EventSink, user: str, after: str | None, count: int) -> list[StreamItem]:
    items: list[StreamItem] = []
    async with asyncio.timeout(5), contextlib.aclosing(sink.subscribe(user, after)) as stream:
        async for item in stream:
            items.append(item)
            if len(items) == count:
                break
    return items


def texts(items: list[StreamItem]) -> list[str]:
    return [i.text for i in items if isinstance(i, AgentThinkingEvent)]


async def test_a_cursor_of_an_earlier_sink_gets_events_lost_not_a_silent_skip() -> None:
    # The first life of the process: alice read six events.
    earlier = InMemoryEventSink()
    for seq in range(1, 7):
        earlier.publish(thinking("alice", seq))
    resume_from = earlier.latest_cursor("alice")
    assert resume_from is not None
    # The next life: twelve events of its own before alice comes back with her cursor.
    sink = InMemoryEventSink()
    assert sink.epoch != earlier.epoch
    for seq in range(1, 13):
        sink.publish(thinking("alice", seq))
    items = await take(sink, "alice", resume_from, 13)
    gap = items[0]
    assert isinstance(gap, EventGap)
    assert gap.type == "events_lost"
    assert gap.after == resume_from
    assert gap.missed is None  # how many followed it in the earlier log: unknown
    assert gap.cursor == f"{sink.epoch}-0"  # before everything this log holds
    # Then everything retained: not events 7..12, silently, as if 1..6 had been read.
    assert texts(items[1:]) == [f"alice-{seq}" for seq in range(1, 13)]
    assert gap.to_wire() == {
        "type": "events_lost",
        "user_id": "alice",
        "after": resume_from,
        "cursor": f"{sink.epoch}-0",
        "missed": None,
    }


async def test_a_bare_number_from_before_epochs_is_another_logs_cursor() -> None:
    sink = InMemoryEventSink()
    for seq in range(1, 4):
        sink.publish(thinking("alice", seq))
    items = await take(sink, "alice", "6", 4)
    assert isinstance(items[0], EventGap)
    assert (items[0].after, items[0].missed) == ("6", None)
    assert texts(items[1:]) == ["alice-1", "alice-2", "alice-3"]


async def test_a_foreign_cursor_on_an_empty_log_is_told_at_once_then_follows_live() -> None:
    sink = InMemoryEventSink()
    stream = sink.subscribe("alice", "0123abcd-40")
    gap = await asyncio.wait_for(anext(stream), 2)  # not held back until an event comes
    assert isinstance(gap, EventGap) and gap.missed is None
    sink.publish(thinking("alice", 1))
    event = await asyncio.wait_for(anext(stream), 2)
    assert isinstance(event, AgentThinkingEvent) and event.cursor == f"{sink.epoch}-1"
    await stream.aclose()
    # The gap's cursor is a resume point of this log.
    assert texts(await take(sink, "alice", gap.cursor, 1)) == ["alice-1"]


async def test_a_foreign_cursor_continues_from_the_oldest_retained_event() -> None:
    sink = InMemoryEventSink(retention=3)
    for seq in range(1, 8):
        sink.publish(thinking("alice", seq))
    items = await take(sink, "alice", "0123abcd-2", 4)
    assert isinstance(items[0], EventGap)
    assert items[0].cursor == f"{sink.epoch}-4" and items[0].missed is None
    assert texts(items[1:]) == ["alice-5", "alice-6", "alice-7"]


async def test_zero_means_everything_retained_in_any_spelling() -> None:
    sink = InMemoryEventSink()
    for seq in range(1, 3):
        sink.publish(thinking("alice", seq))
    for after in (None, "0", f"{sink.epoch}-0"):
        assert texts(await take(sink, "alice", after, 2)) == ["alice-1", "alice-2"], after


@pytest.mark.parametrize(
    "cursor",
    [
        "abc",
        "-1",
        "1.5",
        "0x10",
        "",
        " 1",
        "ABCDEF01-1",
        "abcdef0-1",
        "abcdef01-",
        "1-2-3",
        "9" * 19,
    ],
)
def test_a_malformed_cursor_is_refused_naming_it(cursor: str) -> None:
    sink = InMemoryEventSink()
    with pytest.raises(ValueError, match="invalid cursor") as info:
        sink.subscribe("alice", cursor)
    assert repr(cursor)[:40] in str(info.value)
    assert "LIVE" in str(info.value) or repr(LIVE) in str(info.value)


async def test_a_cursor_of_this_log_ahead_of_its_newest_event_is_refused() -> None:
    sink = InMemoryEventSink()
    sink.publish(thinking("alice", 1))
    with pytest.raises(ValueError, match="ahead of user 'alice'"):
        sink.subscribe("alice", f"{sink.epoch}-2")
    # One of another log with a higher number is not "ahead": it is another log's.
    items = await take(sink, "alice", "0123abcd-99", 2)
    assert isinstance(items[0], EventGap) and texts(items[1:]) == ["alice-1"]


async def test_live_start_skips_what_is_retained_from_the_call_on() -> None:
    sink = InMemoryEventSink()
    for seq in range(1, 4):
        sink.publish(thinking("alice", seq))
    stream = sink.subscribe("alice", LIVE)
    sink.publish(thinking("alice", 4))  # after the call, before the first read: delivered
    first = await asyncio.wait_for(anext(stream), 2)
    assert isinstance(first, AgentThinkingEvent) and first.text == "alice-4"
    await stream.aclose()
    # On an empty log too, and without a gap.
    fresh = sink.subscribe("bob", LIVE)
    sink.publish(thinking("bob", 1))
    assert texts([await asyncio.wait_for(anext(fresh), 2)]) == ["bob-1"]
    await fresh.aclose()


async def test_closing_a_subscription_releases_it_at_once() -> None:
    sink = InMemoryEventSink(max_users=1)
    sink.publish(thinking("alice", 1))
    async with contextlib.aclosing(sink.subscribe("alice")) as stream:
        await anext(stream)
        sink.publish(thinking("bob", 1))  # alice has a subscriber: her log is kept
        assert "alice" in sink.users()
    sink.publish(thinking("carol", 1))  # closed: alice's log may go now
    assert "alice" not in sink.users()


def test_latest_cursor_is_part_of_the_protocol() -> None:
    assert isinstance(InMemoryEventSink(), EventSink)

    class OldSink:
        def publish(self, event: Any) -> None: ...
        def subscribe(self, user_id: str, after: str | None = None) -> Any: ...
        async def aclose(self) -> None: ...

    assert not isinstance(OldSink(), EventSink)
    with pytest.raises(TypeError, match=r"OldSink.*not an EventSink: it lacks latest_cursor"):
        check_event_sink(OldSink(), "here")
    with pytest.raises(TypeError, match=r"ExecutionEngineFactory\(event_sink=...\).*latest_cursor"):
        ExecutionEngineFactory(load_entrypoints=False, event_sink=OldSink())  # type: ignore[arg-type]

    class OldSinkPlugin:
        @hookimpl
        def agentengine_event_sink(self) -> Any:
            return OldSink()

    with pytest.raises(TypeError, match=r"agentengine_event_sink hook of plugin .*latest_cursor"):
        ExecutionEngineFactory(load_entrypoints=False, plugins=[OldSinkPlugin()])


CLIENT = '''
from __future__ import annotations

import contextlib
from typing import assert_type

from agentengine import (
    LIVE,
    AgentCompletedEvent,
    EventGap,
    ExecutionEngineFactory,
    RunStatus,
    StreamItem,
)


async def follow(factory: ExecutionEngineFactory, user: str, after: str | None) -> str | None:
    """Follow a user's stream until a run completes; the cursor to resume from."""
    cursor: str | None = after
    stream = factory.events.subscribe(user, after=after or LIVE)
    async with contextlib.aclosing(stream) as items:
        async for item in items:
            assert_type(item, StreamItem)
            if isinstance(item, EventGap):
                missed: int | None = item.missed
                print("lost", "an unknown number of" if missed is None else missed, "events")
                cursor = item.cursor
                continue
            cursor = item.cursor
            if item.type == "tool_completed":
                print(item.tool, item.status, item.duration_ms)
            elif isinstance(item, AgentCompletedEvent):
                status: RunStatus = item.status
                print(status, item.output)
                return cursor
    return cursor
'''


@pytest.mark.slow
def test_a_client_of_the_stream_type_checks_under_mypy_strict(
    tmp_path: Path, pytestconfig: pytest.Config
) -> None:
    """``subscribe()`` works with ``contextlib.aclosing`` and its items are the union of the
    event types and ``EventGap``: a client narrows them without casts, under ``--strict``."""
    client = tmp_path / "client.py"
    client.write_text(textwrap.dedent(CLIENT))
    # mypy's cache kept by pytest between runs: only the first run checks agentengine cold.
    cache = pytestconfig.cache.mkdir("mypy-strict-client") if pytestconfig.cache else tmp_path
    command = [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(cache), str(client)]
    proc = subprocess.run(
        command, capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # And the check has teeth: reading a field the narrowed type lacks is an error.
    client.write_text(textwrap.dedent(CLIENT).replace("item.tool, item.status", "item.output"))
    proc = subprocess.run(
        command, capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False
    )
    assert proc.returncode == 1 and '"ToolCompletedEvent" has no attribute "output"' in proc.stdout
