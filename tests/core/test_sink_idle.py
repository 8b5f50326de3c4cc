"""The in-memory sink drops the logs of idle users (``[engine] event_log_idle_seconds``).

A log with no subscriber and no run in flight, idle past the TTL, is dropped and its bytes
released; a later subscriber resuming from an old cursor gets ``events_lost``, never a silent
gap. Time is the sink's injected clock: nothing here sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from agentengine import (
    AgentThinkingEvent,
    EventGap,
    ExecutionEngineFactory,
    InMemoryEventSink,
    RunContext,
    StreamItem,
    UserExecutionContext,
    agent,
    hookimpl,
)
from agentengine.config import EngineSettings
from invariants import thinking


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def take(sink: InMemoryEventSink, user: str, after: str | None, count: int) -> list[Any]:
    items: list[StreamItem] = []
    async with asyncio.timeout(5), contextlib.aclosing(sink.subscribe(user, after)) as stream:
        async for item in stream:
            items.append(item)
            if len(items) == count:
                break
    return items


def test_the_setting_has_a_documented_default() -> None:
    assert EngineSettings().event_log_idle_seconds == 3600.0
    assert EngineSettings(event_log_idle_seconds=None).event_log_idle_seconds is None


async def test_idle_logs_are_dropped_and_a_resuming_reader_is_told_what_it_missed() -> None:
    clock = Clock()
    sink = InMemoryEventSink(idle_ttl=60, clock=clock)
    users = [f"u{i}" for i in range(200)]
    for user in users:
        for seq in range(1, 4):
            sink.publish(thinking(user, seq))
    first_cursor = sink.retained("u7")[0].cursor
    assert len(sink.users()) == 200
    assert sink.retained_bytes > 0

    clock.now += 59  # not yet idle for the TTL: nothing goes
    assert sink.evict_idle() == 0
    assert len(sink.users()) == 200
    # A TTL after they were made: published to since (the sink does not read the clock as it
    # publishes), so counted as active at this sweep, and kept.
    clock.now += 2
    assert sink.evict_idle() == 0
    assert len(sink.users()) == 200

    clock.now += 61  # idle for a TTL since that sweep: dropped, their bytes released
    assert sink.evict_idle() == 200
    assert sink.users() == []
    assert sink.retained_bytes == 0
    assert sink.evicted == 200

    # u7 comes back with the cursor of its first event: the two after it are reported lost.
    sink.publish(thinking("u7", 4))
    items = await take(sink, "u7", first_cursor, 2)
    gap = items[0]
    assert isinstance(gap, EventGap)
    assert gap.after == first_cursor
    assert gap.missed == 2
    assert isinstance(items[1], AgentThinkingEvent)
    assert items[1].text == "u7-4"


async def test_creating_a_log_sweeps_once_the_interval_passed() -> None:
    clock = Clock()
    sink = InMemoryEventSink(idle_ttl=10, clock=clock)
    for i in range(50):
        sink.publish(thinking(f"old{i}", 1))
    clock.now += 11  # past the TTL and the sweep interval (5 s): found published to
    sink.publish(thinking("new0", 1))
    assert len(sink.users()) == 51
    clock.now += 11
    sink.publish(thinking("new", 1))  # a new log: the amortised sweep runs before it is made
    assert sink.users() == ["new0", "new"]  # every old log dropped; new0 still fresh


async def test_a_log_with_a_subscriber_is_never_dropped() -> None:
    clock = Clock()
    sink = InMemoryEventSink(idle_ttl=60, clock=clock)
    sink.publish(thinking("reader", 1))
    sink.publish(thinking("quiet", 1))
    got_first = asyncio.Event()

    async def read() -> list[StreamItem]:
        items: list[StreamItem] = []
        async with contextlib.aclosing(sink.subscribe("reader", None)) as stream:
            async for item in stream:
                items.append(item)
                got_first.set()
                if len(items) == 2:
                    return items
        return items

    reader = asyncio.create_task(read())
    async with asyncio.timeout(5):
        await got_first.wait()
    clock.now += 10_000
    sink.evict_idle()  # found published to since they were made
    clock.now += 10_000
    assert sink.evict_idle() == 1  # quiet's log only
    assert sink.users() == ["reader"]
    sink.publish(thinking("reader", 2))
    async with asyncio.timeout(5):
        items = await reader
    assert [i.text for i in items if isinstance(i, AgentThinkingEvent)] == ["reader-1", "reader-2"]
    # The subscriber left: the log is idle from then on, and goes a TTL later.
    clock.now += 59
    assert sink.evict_idle() == 0
    clock.now += 2
    assert sink.evict_idle() == 1
    assert sink.users() == []


async def test_a_busy_user_is_never_dropped_and_one_published_to_counts_as_active() -> None:
    clock = Clock()
    busy = {"running"}
    sink = InMemoryEventSink(idle_ttl=60, clock=clock, busy=busy.__contains__)
    for user in ("running", "talking", "quiet"):
        sink.publish(thinking(user, 1))
    clock.now += 61
    assert sink.evict_idle() == 0  # each published to since it was made: active now
    clock.now += 30
    sink.publish(thinking("talking", 2))  # published to since the last sweep
    clock.now += 31
    assert sink.evict_idle() == 1
    assert sink.users() == ["running", "talking"]
    # The run ended: a TTL after the sweep that last found it busy, it goes.
    busy.clear()
    clock.now += 61
    assert sink.evict_idle() == 2
    assert sink.users() == []


async def test_a_cursor_below_a_forgotten_numbering_gets_missed_unknown() -> None:
    # Only one dropped log's numbering is remembered (max_users=1): alice's is forgotten when
    # bob's log goes, so how many of her events she missed is unknown, not a made-up count.
    clock = Clock()
    sink = InMemoryEventSink(max_users=1, idle_ttl=60, clock=clock)
    for seq in range(1, 4):
        sink.publish(thinking("alice", seq))
    old = sink.retained("alice")[0].cursor
    clock.now += 61
    sink.evict_idle()
    clock.now += 61
    assert sink.evict_idle() == 1
    for seq in range(1, 6):
        sink.publish(thinking("bob", seq))
    clock.now += 61
    sink.evict_idle()
    clock.now += 61
    assert sink.evict_idle() == 1
    sink.publish(thinking("alice", 4))
    items = await take(sink, "alice", old, 2)
    gap = items[0]
    assert isinstance(gap, EventGap)
    assert gap.missed is None
    assert isinstance(items[1], AgentThinkingEvent)
    assert items[1].text == "alice-4"


@agent(name="waits")
async def waits(run: RunContext, gate: str) -> str:
    await run.think("waiting")
    await GATES[gate].wait()
    return "done"


GATES: dict[str, asyncio.Event] = {}


class WaitsPlugin:
    @hookimpl
    def agentengine_register_agents(self, registry):  # type: ignore[no-untyped-def]
        registry.add(waits)


async def test_the_factory_sink_keeps_the_log_of_a_user_with_a_run_in_flight() -> None:
    GATES["g"] = asyncio.Event()
    factory = ExecutionEngineFactory(
        plugins=[WaitsPlugin()], load_entrypoints=False, environ={}, idle_ttl=None
    )
    sink = factory.events
    assert isinstance(sink, InMemoryEventSink)
    assert sink.idle_ttl == 3600.0
    async with factory:
        async with factory.user_execution_engine(UserExecutionContext.for_user("done")) as e:
            GATES["g"].set()
            assert (await e.execute_agent("waits", {"gate": "g"})).succeeded
        GATES["h"] = asyncio.Event()
        async with factory.user_execution_engine(UserExecutionContext.for_user("busy")) as e:
            handle = await e.start_run("waits", {"gate": "h"})
            async with asyncio.timeout(5):
                async for event in handle:
                    if event.type == "agent_thinking":
                        break
            later = time.monotonic() + 10 * 3600
            assert sink.evict_idle(later) == 0  # both found published to since made
            assert sink.evict_idle(later + 2 * 3600) == 1
            assert sink.users() == ["busy"]  # its run is still in flight
            GATES["h"].set()
            assert (await handle.result()).succeeded
            assert sink.evict_idle(later + 4 * 3600) == 0  # busy at the last sweep
            assert sink.evict_idle(later + 6 * 3600) == 1
            assert sink.users() == []
