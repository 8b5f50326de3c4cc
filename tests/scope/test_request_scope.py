"""The built-in request_scope plugin, with a real resource: an aiosqlite connection per run on
a temporary database file."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from agentengine import (
    RunContext,
    RunStatus,
    UserExecutionContext,
    agent,
    hookimpl,
    tool,
)
from agentengine.definitions.resources import ResourceRegistry
from agentengine.testing import assert_isolated, run_agent


def committed_notes(path: Path) -> list[tuple[str, str]]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return sorted(conn.execute("SELECT user_id, text FROM notes").fetchall())


class SqlitePlugin:
    """Declares ``db``: one aiosqlite connection per run, committed when the run succeeds and
    rolled back otherwise. Records every connection it opened and closed."""

    name = "sqlite_db"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.opened: list[aiosqlite.Connection] = []
        self.closed: list[aiosqlite.Connection] = []
        self.outcomes: list[str] = []
        self.gate = asyncio.Event()
        self.written: dict[str, asyncio.Event] = {}
        with contextlib.closing(sqlite3.connect(path)) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS notes (user_id TEXT, text TEXT)")
            conn.commit()

    @contextlib.asynccontextmanager
    async def open_db(self, run: RunContext) -> Any:
        """A connection to the notes database, for this run only."""
        # A run cancelled while connecting must not leak the connection aiosqlite goes on
        # opening in its thread: finish connecting, then close it.
        connecting = asyncio.ensure_future(aiosqlite.connect(self.path, timeout=5.0))
        try:
            conn = await asyncio.shield(connecting)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await (await connecting).close()
            raise
        self.opened.append(conn)
        try:
            yield conn
        except BaseException as exc:
            await conn.rollback()
            self.outcomes.append(f"rollback:{type(exc).__name__}")
            raise
        else:
            await conn.commit()
            self.outcomes.append("commit")
        finally:
            await conn.close()
            self.closed.append(conn)

    @hookimpl
    def agentengine_register_resources(self, registry: ResourceRegistry) -> None:
        registry.add("db", self.open_db)

    @hookimpl
    def agentengine_register_tools(self, registry: Any) -> None:
        @tool
        async def count_notes(run: RunContext) -> int:
            """Count the notes this run's connection sees."""
            db = await run.scope["db"]
            async with db.execute("SELECT COUNT(*) FROM notes") as cursor:
                row = await cursor.fetchone()
            return int(row[0]) if row else 0

        registry.add(count_notes)

    @hookimpl
    def agentengine_register_agents(self, registry: Any) -> None:
        plugin = self

        @agent(name="write_note")
        async def write_note(
            run: RunContext, text: str, then: str = "return", hold: bool = False
        ) -> int:
            """Write a note, optionally wait, then return, fail or hang."""
            db = await run.scope["db"]
            await db.execute("INSERT INTO notes VALUES (?, ?)", (run.user_id, text))
            plugin.written.setdefault(run.user_id, asyncio.Event()).set()
            if hold:
                await plugin.gate.wait()
            if then == "fail":
                raise RuntimeError("the agent failed after writing")
            if then == "hang":
                await asyncio.sleep(60)
            return int(await run.call_tool("count_notes", {}))

        @agent(name="read_notes")
        async def read_notes(run: RunContext) -> int:
            """Count the notes visible to this run."""
            return int(await run.call_tool("count_notes", {}))

        @agent(name="no_db")
        async def no_db(run: RunContext) -> str:
            """Never touches the database."""
            return "done"

        @agent(name="same_twice")
        async def same_twice(run: RunContext) -> bool:
            """Asks for db twice, the first two times concurrently."""
            first, second = await asyncio.gather(run.scope["db"], run.scope["db"])
            third = await run.scope["db"]
            return first is second is third

        @agent(name="read_and_hang")
        async def read_and_hang(run: RunContext) -> int:
            """Read, then never finish (ended by a timeout or a cancellation)."""
            await run.call_tool("count_notes", {})
            plugin.written.setdefault(f"reading:{run.run_id}", asyncio.Event()).set()
            await asyncio.sleep(60)
            return -1

        registry.add(write_note)
        registry.add(read_notes)
        registry.add(read_and_hang)
        registry.add(no_db)
        registry.add(same_twice)


async def assert_all_closed(plugin: SqlitePlugin) -> None:
    assert plugin.opened, "the test expected at least one connection"
    assert len(plugin.closed) == len(plugin.opened)
    assert {id(c) for c in plugin.closed} == {id(c) for c in plugin.opened}
    for conn in plugin.opened:
        with pytest.raises(ValueError, match="no active connection"):
            await conn.execute("SELECT 1")


@pytest.fixture
def sqlite_plugin(tmp_path: Path) -> SqlitePlugin:
    return SqlitePlugin(tmp_path / "notes.db")


async def test_success_commits_and_closes(make_engine_factory, sqlite_plugin) -> None:
    factory = make_engine_factory(plugins=[sqlite_plugin])
    result, _ = await run_agent(factory, "write_note", {"text": "hi"}, user="alice")
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert result.output == 1  # the run sees its own uncommitted write
    assert sqlite_plugin.outcomes == ["commit"]
    assert committed_notes(sqlite_plugin.path) == [("alice", "hi")]
    await assert_all_closed(sqlite_plugin)


async def test_uncommitted_write_is_invisible_to_another_users_concurrent_run(
    make_engine_factory, sqlite_plugin, event_recorder
) -> None:
    factory = make_engine_factory(plugins=[sqlite_plugin])
    async with (
        factory.user_execution_engine(UserExecutionContext.for_user("alice")) as alice,
        factory.user_execution_engine(UserExecutionContext.for_user("bob")) as bob,
    ):
        writer = await alice.start_run("write_note", {"text": "secret", "hold": True})
        await asyncio.wait_for(
            sqlite_plugin.written.setdefault("alice", asyncio.Event()).wait(), 10
        )
        seen_by_bob = await bob.execute_agent("read_notes", {})
        sqlite_plugin.gate.set()
        written = await writer.result()
    assert seen_by_bob.status is RunStatus.SUCCEEDED, seen_by_bob.error
    assert seen_by_bob.output == 0
    assert written.output == 1
    assert committed_notes(sqlite_plugin.path) == [("alice", "secret")]
    assert len(sqlite_plugin.opened) == 2  # one connection per run
    await assert_all_closed(sqlite_plugin)
    assert_isolated(event_recorder)


async def test_concurrent_readers_of_many_users_never_see_a_held_write(
    make_engine_factory, sqlite_plugin, user_context, event_recorder
) -> None:
    factory = make_engine_factory(plugins=[sqlite_plugin])
    readers = user_context.many(8)
    async with factory.user_execution_engine(UserExecutionContext.for_user("alice")) as alice:
        writer = await alice.start_run("write_note", {"text": "secret", "hold": True})
        await asyncio.wait_for(written(sqlite_plugin, "alice").wait(), 10)
        seen = await asyncio.gather(
            *(run_agent(factory, "read_notes", {}, user=ctx) for ctx in readers)
        )
        sqlite_plugin.gate.set()
        assert (await writer.result()).status is RunStatus.SUCCEEDED
    assert [r.result.output for r in seen] == [0] * len(readers)
    # one connection per run, none reused: 1 writer + 8 readers
    assert len({id(c) for c in sqlite_plugin.opened}) == 1 + len(readers)
    await assert_all_closed(sqlite_plugin)
    assert_isolated(event_recorder)
    assert committed_notes(sqlite_plugin.path) == [("alice", "secret")]


def written(plugin: SqlitePlugin, user_id: str) -> asyncio.Event:
    return plugin.written.setdefault(user_id, asyncio.Event())


async def test_failed_run_rolls_back_closes_and_keeps_its_own_error(
    make_engine_factory, sqlite_plugin
) -> None:
    factory = make_engine_factory(plugins=[sqlite_plugin])
    result, _ = await run_agent(factory, "write_note", {"text": "x", "then": "fail"}, user="alice")
    assert result.status is RunStatus.FAILED
    assert result.error == "RuntimeError: the agent failed after writing"
    assert sqlite_plugin.outcomes == ["rollback:RuntimeError"]
    assert committed_notes(sqlite_plugin.path) == []
    await assert_all_closed(sqlite_plugin)


async def test_timed_out_run_rolls_back_and_closes(make_engine_factory, sqlite_plugin) -> None:
    factory = make_engine_factory(plugins=[sqlite_plugin])
    async with factory.user_execution_engine(UserExecutionContext.for_user("alice")) as engine:
        result = await engine.execute_agent(
            "write_note", {"text": "x", "then": "hang"}, timeout=0.3
        )
    assert result.status is RunStatus.TIMED_OUT
    assert sqlite_plugin.outcomes == ["rollback:CancelledError"]
    assert committed_notes(sqlite_plugin.path) == []
    await assert_all_closed(sqlite_plugin)


async def test_cancelled_run_rolls_back_and_closes(make_engine_factory, sqlite_plugin) -> None:
    factory = make_engine_factory(plugins=[sqlite_plugin])
    async with factory.user_execution_engine(UserExecutionContext.for_user("alice")) as engine:
        handle = await engine.start_run("write_note", {"text": "x", "hold": True})
        await asyncio.wait_for(written(sqlite_plugin, "alice").wait(), 10)
        await handle.cancel()
        result = await handle.result()
    assert result.status is RunStatus.CANCELLED
    assert sqlite_plugin.outcomes == ["rollback:CancelledError"]
    assert committed_notes(sqlite_plugin.path) == []
    await assert_all_closed(sqlite_plugin)


async def test_engine_cleanup_closes_the_resources_of_runs_in_progress(
    make_engine_factory, sqlite_plugin
) -> None:
    factory = make_engine_factory(plugins=[sqlite_plugin])
    engine = await factory.create_for_user(UserExecutionContext.for_user("alice"))
    handles = [
        await engine.start_run("write_note", {"text": "x", "hold": True}),
        await engine.start_run("read_notes", {}),
    ]
    await asyncio.wait_for(written(sqlite_plugin, "alice").wait(), 10)
    await engine.cleanup()
    statuses = {(await h.result()).status for h in handles}
    assert RunStatus.CANCELLED in statuses
    await assert_all_closed(sqlite_plugin)
    assert committed_notes(sqlite_plugin.path) == []


async def test_request_scoped_engine_releases_everything_on_exit(
    make_engine_factory, sqlite_plugin
) -> None:
    factory = make_engine_factory(plugins=[sqlite_plugin])
    ctx = UserExecutionContext.for_user("alice")
    async with factory.create_request_scoped_engine(ctx) as engine:
        done = await engine.execute_agent("write_note", {"text": "kept"})
        held = await engine.start_run("write_note", {"text": "dropped", "hold": True})
        await asyncio.wait_for(written(sqlite_plugin, "alice").wait(), 10)
    assert done.status is RunStatus.SUCCEEDED
    assert (await held.result()).status is RunStatus.CANCELLED
    assert engine.closed
    assert factory.engines_for("alice") == []
    await assert_all_closed(sqlite_plugin)
    assert committed_notes(sqlite_plugin.path) == [("alice", "kept")]


async def test_resources_open_lazily_once_per_run(make_engine_factory, sqlite_plugin) -> None:
    factory = make_engine_factory(plugins=[sqlite_plugin])
    async with factory.user_execution_engine(UserExecutionContext.for_user("alice")) as engine:
        untouched = await engine.execute_agent("no_db", {})
        assert sqlite_plugin.opened == []
        shared = await engine.execute_agent("same_twice", {})
        again = await engine.execute_agent("same_twice", {})
    assert untouched.status is RunStatus.SUCCEEDED
    assert shared.output is True
    assert again.output is True
    assert len(sqlite_plugin.opened) == 2  # one per run, even with concurrent first use
    await assert_all_closed(sqlite_plugin)


async def test_many_users_mixed_outcomes_every_connection_closed(
    make_engine_factory, sqlite_plugin, user_context, event_recorder
) -> None:
    factory = make_engine_factory(plugins=[sqlite_plugin], max_concurrent_per_user=3)
    users = user_context.many(10)

    async def one_user(n: int, ctx: UserExecutionContext) -> list[RunStatus]:
        async with factory.user_execution_engine(ctx) as engine:
            reading = engine.execute_agent("read_notes", {})
            committing = engine.execute_agent("write_note", {"text": f"note {n}"})
            failing = engine.execute_agent("write_note", {"text": "x", "then": "fail"})
            timing_out = engine.execute_agent("read_and_hang", {}, timeout=0.5)
            hanging = await engine.start_run("read_and_hang", {})
            started = written(sqlite_plugin, f"reading:{hanging.run_id}")
            await asyncio.wait_for(started.wait(), 10)
            await hanging.cancel()
            results = await asyncio.gather(reading, committing, failing, timing_out)
            return [r.status for r in results] + [(await hanging.result()).status]

    outcomes = await asyncio.gather(*(one_user(n, ctx) for n, ctx in enumerate(users)))
    assert outcomes == [
        [
            RunStatus.SUCCEEDED,
            RunStatus.SUCCEEDED,
            RunStatus.FAILED,
            RunStatus.TIMED_OUT,
            RunStatus.CANCELLED,
        ]
    ] * len(users)
    assert len(sqlite_plugin.opened) == 5 * len(users)
    await assert_all_closed(sqlite_plugin)
    committed = committed_notes(sqlite_plugin.path)
    assert sorted(committed) == sorted((ctx.user_id, f"note {n}") for n, ctx in enumerate(users))
    assert_isolated(event_recorder)
