"""What every event sink guarantees, written once and run on each sink: the in-memory sink
and the Redis sink (on a real redis-server).

Cursors are opaque here: the tests take them from the events a sink delivered (or from the
published events, once the sink stored them) and compare them, never their text.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from agentengine import (
    LIVE,
    BaseEvent,
    EventGap,
    ExecutionEngineFactory,
    InMemoryEventSink,
    UserExecutionContext,
)
from hypothesis import HealthCheck, given, settings, strategies as st
from invariants import thinking
from outcome_agents import OutcomesPlugin
from redis_server import RedisProcess, unique_prefix


@dataclass
class SinkCase:
    """How to make one kind of sink, wait until it stored what was published, and forge a
    cursor of the same log ahead of a given one."""

    kind: str
    make: Callable[..., Any]
    ahead: Callable[[str, int], str]

    @asynccontextmanager
    async def sink(self, **options: Any) -> AsyncIterator[Any]:
        sink = self.make(**options)
        try:
            yield sink
        finally:
            await sink.aclose()

    async def settle(self, sink: Any) -> None:
        """Wait until every published event has its cursor (the Redis sink stores them in the
        background)."""
        flush = getattr(sink, "flush", None)
        if flush is not None:
            await flush()


def _ahead(cursor: str, by: int) -> str:
    """A cursor ``by`` events past ``cursor`` in the same log (both sinks' cursors are
    ``<epoch>-<n>``; opaque to clients, but a conformance test may look inside)."""
    epoch, _, n = cursor.rpartition("-")
    return f"{epoch}-{int(n) + by}"


@pytest.fixture(params=["memory", "redis"])
def case(request: pytest.FixtureRequest) -> SinkCase:
    if request.param == "memory":
        return SinkCase("memory", InMemoryEventSink, _ahead)
    from agentengine_redis import RedisEventSink, RedisSettings

    server: RedisProcess = request.getfixturevalue("redis_process")

    def make(retention: int = 10_000) -> RedisEventSink:
        return RedisEventSink(
            RedisSettings(url=server.url, key_prefix=unique_prefix(), retention=retention)
        )

    return SinkCase("redis", make, _ahead)


async def take(sink: Any, user: str, after: str | None, n: int) -> list[Any]:
    items = []
    async with asyncio.timeout(10):
        async for item in sink.subscribe(user, after=after):
            items.append(item)
            if len(items) == n:
                break
    return items


async def test_resume_after_cursor_loses_and_repeats_nothing(case: SinkCase) -> None:
    async with ExecutionEngineFactory(
        plugins=[OutcomesPlugin()], load_entrypoints=False, event_sink=case.make()
    ) as f:
        seen: list[BaseEvent] = []
        async with f.user_execution_engine(UserExecutionContext.for_user("alice")) as engine:
            first = await engine.execute_agent("calc", {"text": "1"})
            # A subscriber reads a few events, "disconnects", and resumes from its cursor while
            # more runs happen.
            seen += await take(f.events, "alice", None, 3)
            second = await engine.execute_agent("calc", {"text": "2"})
            resumed = asyncio.create_task(
                take(
                    f.events,
                    "alice",
                    seen[-1].cursor,
                    len(first.events) + 2 * len(second.events) - 3,
                )
            )
            third = await engine.execute_agent("calc", {"text": "3"})
            seen += await asyncio.wait_for(resumed, 10)
            await case.settle(f.events)
    expected = [*first.events, *second.events, *third.events]
    assert [(e.run_id, e.seq) for e in seen] == [(e.run_id, e.seq) for e in expected]
    assert [e.cursor for e in seen] == [e.cursor for e in expected]
    assert len({e.cursor for e in seen}) == len(seen)


async def test_live_subscriber_follows_and_other_users_are_invisible(case: SinkCase) -> None:
    async with case.sink() as sink:
        task = asyncio.create_task(take(sink, "alice", None, 3))
        await asyncio.sleep(0.05)
        for seq in range(1, 4):
            sink.publish(thinking("bob", seq))
            sink.publish(thinking("alice", seq))
        items = await asyncio.wait_for(task, 10)
        assert [e.text for e in items] == ["alice-1", "alice-2", "alice-3"]
        assert all(e.user_id == "alice" for e in items)


async def test_live_starts_a_stream_of_what_comes_next(case: SinkCase) -> None:
    async with case.sink() as sink:
        for seq in range(1, 4):
            sink.publish(thinking("bob", seq))
        # Subscribed right after publishing: what was published before is not repeated.
        followers = [
            asyncio.create_task(take(sink, "bob", LIVE, 1)),
            asyncio.create_task(take(sink, "carol", LIVE, 1)),  # a user without events
        ]
        await asyncio.sleep(0.1)
        sink.publish(thinking("bob", 4))
        sink.publish(thinking("carol", 1))
        bob, carol = await asyncio.wait_for(asyncio.gather(*followers), 10)
        assert [e.text for e in bob] == ["bob-4"]
        assert [e.text for e in carol] == ["carol-1"]


async def test_latest_cursor_is_a_resume_point_of_the_newest_known_event(case: SinkCase) -> None:
    async with case.sink() as sink:
        assert sink.latest_cursor("dave") is None  # nothing known of this user
        # A live subscriber stays on all along: the Redis sink knows the newest event of a user
        # with live subscribers in this process (what its reader saw); the memory sink, always.
        watcher = asyncio.create_task(take(sink, "erin", LIVE, 4))
        await asyncio.sleep(0.1)
        published = [thinking("erin", seq) for seq in range(1, 4)]
        for event in published:
            sink.publish(event)
        await case.settle(sink)
        async with asyncio.timeout(5):  # the reader may not have seen the newest one yet
            while sink.latest_cursor("erin") != published[-1].cursor:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        follower = asyncio.create_task(take(sink, "erin", sink.latest_cursor("erin"), 1))
        await asyncio.sleep(0.1)
        sink.publish(thinking("erin", 4))
        (nxt,) = await asyncio.wait_for(follower, 10)
        assert nxt.text == "erin-4"
        assert [e.text for e in await asyncio.wait_for(watcher, 10)] == [
            "erin-1",
            "erin-2",
            "erin-3",
            "erin-4",
        ]


async def test_a_cursor_of_another_log_gets_events_lost_of_unknown_size(case: SinkCase) -> None:
    async with case.sink() as sink:
        for seq in range(1, 3):
            sink.publish(thinking("fay", seq))
        await case.settle(sink)
        for foreign in ("6", "0badcafe-6"):  # a bare number (older form), another epoch
            items = await take(sink, "fay", foreign, 3)
            gap = items[0]
            assert isinstance(gap, EventGap)
            assert gap.after == foreign and gap.missed is None
            assert [e.text for e in items[1:]] == ["fay-1", "fay-2"]


async def test_retention_overflow_is_signalled_not_skipped(case: SinkCase) -> None:
    async with case.sink(retention=3) as sink:
        published = [thinking("alice", seq) for seq in range(1, 7)]
        for event in published:
            sink.publish(event)
        await case.settle(sink)
        cursors = [e.cursor for e in published]
        items = await take(sink, "alice", cursors[0], 4)
        gap = items[0]
        assert isinstance(gap, EventGap)
        assert gap.after == cursors[0] and gap.cursor == cursors[2] and gap.missed == 2
        assert [e.cursor for e in items[1:]] == cursors[3:]
        assert gap.to_wire()["type"] == "events_lost"
        everything = await take(sink, "alice", None, 1)
        assert isinstance(everything[0], EventGap) and everything[0].missed == 3
        assert everything[0].after is None and everything[0].cursor == cursors[2]
        # "0" means everything retained, as None does.
        assert await take(sink, "alice", "0", 2) == [everything[0], items[1]]


async def test_slow_subscriber_gets_gap_when_it_falls_behind_live(case: SinkCase) -> None:
    async with case.sink(retention=2) as sink:
        sink.publish(thinking("alice", 1))
        stream = sink.subscribe("alice")
        first = await asyncio.wait_for(anext(stream), 10)
        assert first.text == "alice-1"
        published = [thinking("alice", seq) for seq in range(2, 7)]
        for event in published:  # the subscriber is "slow": five more arrive meanwhile
            sink.publish(event)
        await case.settle(sink)
        await asyncio.sleep(0.1)  # the Redis sink's reader sees them
        following: list[Any] = []
        while not following or following[-1].cursor != published[-1].cursor:
            following.append(await asyncio.wait_for(anext(stream), 10))
        gaps = [i for i in following if isinstance(i, EventGap)]
        events = [i for i in following if isinstance(i, BaseEvent)]
        assert [g.missed for g in gaps] == [3]
        assert [e.text for e in events] == ["alice-5", "alice-6"]
        assert following[0] is gaps[0]
        await stream.aclose()


async def test_bad_cursor_is_a_clear_error(case: SinkCase) -> None:
    async with case.sink() as sink:
        for bad in ["abc", "-1", "1.5", ""]:
            if bad == "" and case.kind == "memory":
                continue  # "" is None's falsy twin for the server; the sink's own rule
            with pytest.raises(ValueError, match=r"invalid cursor|not negative"):
                await take(sink, "alice", bad, 1)


async def test_cursor_ahead_of_the_newest_is_refused_not_waited_on(case: SinkCase) -> None:
    async with case.sink() as sink:
        published = [thinking("alice", seq) for seq in range(1, 4)]
        for event in published:
            sink.publish(event)
        await case.settle(sink)
        newest = published[-1].cursor
        assert newest is not None
        ahead = case.ahead(newest, 497)
        with pytest.raises(
            ValueError,
            match=rf"cursor '{re.escape(ahead)}' is ahead of user 'alice'.*"
            rf"newest event \(cursor {re.escape(newest)}\)",
        ):
            await take(sink, "alice", ahead, 1)
        # The newest cursor itself is a valid resume point: the next event follows.
        follower = asyncio.create_task(take(sink, "alice", newest, 1))
        await asyncio.sleep(0.05)
        sink.publish(thinking("alice", 4))
        assert [e.text for e in await asyncio.wait_for(follower, 10)] == ["alice-4"]


async def test_closing_ends_streams_after_what_was_published(case: SinkCase) -> None:
    sink = case.make()
    try:
        stream = sink.subscribe("alice")
        first = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.05)
        sink.publish(thinking("alice", 1))
        assert (await asyncio.wait_for(first, 10)).text == "alice-1"
        sink.publish(thinking("alice", 2))
        sink.publish(thinking("alice", 3))
    finally:
        await sink.aclose()
    rest = [item async for item in stream]
    assert [e.text for e in rest] == ["alice-2", "alice-3"]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    publishes=st.lists(st.sampled_from(["alice", "bob", "carol"]), min_size=1, max_size=60),
    resume_at=st.integers(min_value=0, max_value=60),
    retention=st.integers(min_value=1, max_value=80),
)
def test_any_interleaving_delivers_exactly_the_users_events(
    case: SinkCase, publishes: list[str], resume_at: int, retention: int
) -> None:
    async def scenario() -> None:
        async with case.sink(retention=retention) as sink:
            counters: dict[str, int] = {}
            published: dict[str, list[BaseEvent]] = {}
            for user in publishes:
                counters[user] = counters.get(user, 0) + 1
                event = thinking(user, counters[user])
                published.setdefault(user, []).append(event)
                sink.publish(event)
            await case.settle(sink)
            for user, total in counters.items():
                after = min(resume_at, total)
                wanted = total - after
                if wanted == 0:
                    continue
                dropped = max(0, total - retention)
                got = await take(
                    sink,
                    user,
                    published[user][after - 1].cursor if after else None,
                    wanted if after >= dropped else (total - dropped) + 1,
                )
                events = [g for g in got if isinstance(g, BaseEvent)]
                gaps = [g for g in got if isinstance(g, EventGap)]
                assert all(e.user_id == user for e in events)
                missed = sum(g.missed for g in gaps)
                assert missed + len(events) == wanted  # every wanted event delivered or signalled
                assert len({e.cursor for e in events}) == len(events)
                assert [e.text for e in events] == [e.text for e in published[user][-len(events) :]]

    asyncio.run(scenario())
