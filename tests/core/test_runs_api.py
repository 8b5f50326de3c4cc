"""Runs owned by the core: ``factory.submit_run`` and ``factory.runs`` (get, list, cancel by
id), with real factories, engines, extensions and an ASGI app served through httpx."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from agentengine import (
    EngineClosedError,
    EngineLimitError,
    ExecutionEngineFactory,
    InvalidContextError,
    RunContext,
    RunRecord,
    Settings,
    ToolArgumentError,
    UnknownAgentError,
    UserExecutionContext,
    agent,
    hookimpl,
)
from outcome_agents import OutcomesPlugin
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

TERMINAL = {"succeeded", "failed", "timed_out", "cancelled"}


@agent(name="gated")
async def gated(run: RunContext, key: str) -> str:
    """Wait until the test opens the gate ``key`` (so the test decides when runs end)."""
    await run.think(f"waiting for {key}")
    await GATES.setdefault(key, asyncio.Event()).wait()
    return f"{run.user_id}:{key}"


@agent(name="blob")
async def blob(run: RunContext, size: int) -> str:
    """An output of ``size`` characters."""
    return "x" * size


GATES: dict[str, asyncio.Event] = {}


class Closing:
    """An extension recording its engine's close (one per engine)."""

    def __init__(self, log: list[str], user_id: str) -> None:
        self.log = log
        self.user_id = user_id

    async def close(self) -> None:
        self.log.append(self.user_id)


class RunsPlugin:
    """The agents above, and an extension per engine whose close is recorded."""

    name = "runs-tests"

    def __init__(self) -> None:
        self.closed: list[str] = []

    @hookimpl
    def agentengine_register_agents(self, registry: Any) -> None:
        registry.add(gated)
        registry.add(blob)

    @hookimpl
    def agentengine_engine_extensions(
        self, context: UserExecutionContext, engine: Any
    ) -> list[Any]:
        return [Closing(self.closed, context.user_id)]


def make_factory(*, engine: dict[str, Any] | None = None, **kwargs: Any) -> ExecutionEngineFactory:
    plugin = kwargs.pop("plugin", None) or RunsPlugin()
    return ExecutionEngineFactory(
        plugins=[OutcomesPlugin(), plugin],
        load_entrypoints=False,
        idle_ttl=None,
        config=Settings({"engine": engine or {}}),
        **kwargs,
    )


@pytest.fixture(autouse=True)
def _fresh_gates() -> None:
    GATES.clear()


def _open(key: str) -> None:
    GATES.setdefault(key, asyncio.Event()).set()


async def _until(predicate: Any, what: str, limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


async def test_ten_users_five_runs_each_concurrently_stay_apart() -> None:
    users = [f"user-{n}" for n in range(10)]
    plugin = RunsPlugin()
    async with make_factory(plugin=plugin, max_concurrent_per_user=5) as factory:

        async def submit(user: str, n: int) -> str:
            ctx = UserExecutionContext.for_user(user)
            handle = await factory.submit_run(ctx, "gated", {"key": f"{user}-{n}"})
            return handle.run_id

        ids = await asyncio.gather(*(submit(u, n) for u in users for n in range(5)))
        by_user = {u: ids[i * 5 : i * 5 + 5] for i, u in enumerate(users)}
        assert len(set(ids)) == 50
        for user, run_ids in by_user.items():
            listed = await factory.runs.list(user)
            assert [r.run_id for r in listed] == run_ids
            assert {r.status for r in listed} <= {"queued", "running"}
            assert all(r.user_id == user and r.finished_at is None for r in listed)
            other = users[(users.index(user) + 1) % len(users)]
            for run_id in run_ids:
                assert (await factory.runs.get(user, run_id)) is not None
                # Another user's id is simply not found, and cannot be cancelled.
                assert await factory.runs.get(other, run_id) is None
                assert await factory.runs.cancel(other, run_id) is None
        # Cancel each user's first run by id; let the others end.
        cancelled = await asyncio.gather(*(factory.runs.cancel(u, by_user[u][0]) for u in users))
        assert all(r is not None and r.status == "cancelled" for r in cancelled)
        for user in users:
            for n in range(1, 5):
                _open(f"{user}-{n}")
        await factory.runs.wait_finished(10)
        for user, run_ids in by_user.items():
            records = [await factory.runs.get(user, run_id) for run_id in run_ids]
            assert [r.status for r in records if r] == ["cancelled"] + ["succeeded"] * 4
            for n, record in enumerate(records[1:], start=1):
                assert record is not None
                assert record.output == f"{user}:{user}-{n}"
                assert record.event_count == 3  # started, thinking, completed
                assert record.started_at is not None and record.finished_at is not None
                assert record.created_at <= record.started_at <= record.finished_at
                assert record.to_dict()["user_id"] == user
        # One engine per run, each cleaned up (its extensions closed) once the run ended.
        assert sorted(plugin.closed) == sorted(u for u in users for _ in range(5))
        metrics = factory.get_factory_metrics()
        assert metrics["engines_active"] == 0
        assert metrics["engines_created"] == metrics["engines_cleaned"] == 50


async def test_a_submitted_run_outlives_the_request_that_submitted_it() -> None:
    async with make_factory() as factory:

        async def post_run(request: Request) -> JSONResponse:
            ctx = UserExecutionContext.for_user(request.path_params["user"])
            # The handler's own engine is cleaned up (its runs cancelled) when it returns.
            async with factory.create_request_scoped_engine(ctx):
                handle = await factory.submit_run(ctx, "gated", {"key": "later"})
            return JSONResponse({"run_id": handle.run_id}, status_code=202)

        async def get_run(request: Request) -> JSONResponse:
            record = await factory.runs.get(request.path_params["user"], request.path_params["id"])
            if record is None:
                return JSONResponse({"error": "run_not_found"}, status_code=404)
            return JSONResponse(record.to_dict())

        app = Starlette(
            routes=[
                Route("/{user}/runs", post_run, methods=["POST"]),
                Route("/{user}/runs/{id}", get_run),
            ]
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            r = await client.post("/alice/runs")
            assert r.status_code == 202
            run_id = r.json()["run_id"]
            # The request is over; the run goes on.
            await asyncio.sleep(0.05)
            r = await client.get(f"/alice/runs/{run_id}")
            assert r.status_code == 200
            assert r.json()["status"] == "running"
            assert (await client.get(f"/bob/runs/{run_id}")).status_code == 404
            _open("later")
            await factory.runs.wait_finished(10)
            body = (await client.get(f"/alice/runs/{run_id}")).json()
            assert body["status"] == "succeeded"
            assert body["output"] == "alice:later"
            assert body["event_count"] == 3


async def test_cancel_a_queued_run() -> None:
    # One global slot: the second run waits for it, queued.
    async with make_factory(max_concurrent_runs=1) as factory:
        first = await factory.submit_run(UserExecutionContext.for_user("al"), "gated", {"key": "a"})
        second = await factory.submit_run(
            UserExecutionContext.for_user("bo"), "gated", {"key": "b"}
        )
        running = factory.runs.lookup("al", first.run_id)
        assert running is not None
        await _until(lambda: running.status == "running", "the first run running")
        queued = await factory.runs.get("bo", second.run_id)
        assert queued is not None and queued.status == "queued" and queued.started_at is None
        record = await factory.runs.cancel("bo", second.run_id)
        assert record is not None
        assert record.status == "cancelled" and record.started_at is None
        events = (await second.result()).events
        assert [e.type for e in events] == ["agent_started", "agent_completed"]
        # Cancelling again leaves the ended record as it was.
        again = await factory.runs.cancel("bo", second.run_id)
        assert again is record and again.status == "cancelled"
        _open("a")
        assert (await first.result()).output == "al:a"


async def test_errors_before_the_run_exists_raise_as_start_run_does() -> None:
    factory = make_factory()
    ctx = UserExecutionContext.for_user("alice")
    with pytest.raises(UnknownAgentError, match="nope"):
        await factory.submit_run(ctx, "nope", {})
    with pytest.raises(ToolArgumentError, match="input for agent 'gated'"):
        await factory.submit_run(ctx, "gated", ["not", "an", "object"])  # type: ignore[arg-type]
    with pytest.raises(ToolArgumentError, match="key"):
        await factory.submit_run(ctx, "gated", {"wrong": 1})
    with pytest.raises(InvalidContextError, match="UserExecutionContext"):
        await factory.submit_run({"user_id": "alice"}, "gated", {})  # type: ignore[arg-type]
    # None of them left a record, an engine or a slot behind.
    assert await factory.runs.list("alice") == []
    assert factory.get_factory_metrics()["engines_created"] == 0
    await factory.shutdown()
    with pytest.raises(EngineClosedError):
        await factory.submit_run(ctx, "gated", {"key": "x"})


async def test_one_limit_on_a_users_runs_in_flight() -> None:
    # max_engines_per_user=1 is not a second cap on submitted runs: max_concurrent_per_user is.
    async with make_factory(max_concurrent_per_user=2, max_engines_per_user=1) as factory:
        ctx = UserExecutionContext.for_user
        handles = [await factory.submit_run(ctx("al"), "gated", {"key": "k"}) for _ in range(2)]
        with pytest.raises(EngineLimitError, match="max_concurrent_per_user"):
            await factory.submit_run(ctx("al"), "gated", {"key": "k"})
        # Other users are not affected, and the user's own engine is still allowed (its run
        # waits for one of the user's two slots, both held by the runs in flight).
        other = await factory.submit_run(ctx("bo"), "gated", {"key": "k"})
        async with factory.user_execution_engine(ctx("al")) as engine:
            quick = await engine.start_run("quick", {"n": 1})
            # Once a run ended (here: cancelled), the user may submit again at once.
            await factory.runs.cancel("al", handles[0].run_id)
            assert (await quick.result()).succeeded
        assert factory.runs.in_flight("al") == 1
        again = await factory.submit_run(ctx("al"), "gated", {"key": "k"})
        assert len(await factory.runs.list("al")) == 3
        _open("k")
        for handle in (handles[1], other, again):
            assert (await handle.result()).succeeded


async def test_the_context_run_id_names_the_run_once() -> None:
    async with make_factory() as factory:
        ctx = UserExecutionContext(user_id="alice", run_id="run-mine")
        first = await factory.submit_run(ctx, "quick", {"n": 1})
        second = await factory.submit_run(ctx, "quick", {"n": 2})
        assert first.run_id == "run-mine"
        assert second.run_id != "run-mine"
        await factory.runs.wait_finished(10)
        assert [r.output for r in await factory.runs.list("alice")] == [1, 2]


async def test_records_are_bounded_per_user_and_by_count_over_all_users() -> None:
    async with make_factory(engine={"finished_runs_kept": 3, "max_finished_runs": 4}) as f:

        async def run(user: str) -> str:
            handle = await f.submit_run(UserExecutionContext.for_user(user), "quick", {"n": 1})
            await f.runs.wait_finished(10)
            return handle.run_id

        async def listed(user: str) -> list[str]:
            return [r.run_id for r in await f.runs.list(user)]

        a = [await run("alice") for _ in range(4)]
        assert await listed("alice") == a[1:]  # per user: 3
        b = [await run("bob") for _ in range(2)]
        # Over all users at most 4: alice, the least recently active, lost her oldest.
        assert await listed("alice") == a[2:]
        assert await listed("bob") == b
        assert await f.runs.get("alice", a[1]) is None
        assert f.runs.finished_count == 4


async def test_records_are_bounded_in_bytes() -> None:
    async with make_factory(engine={"finished_runs_max_bytes": 7000}) as f:
        ids = []
        for user in ("al", "bo", "cy", "di"):
            h = await f.submit_run(UserExecutionContext.for_user(user), "blob", {"size": 2000})
            await f.runs.wait_finished(10)
            ids.append(h.run_id)
        # Each record counts as its 2 KB output plus 1 KiB: only the two most recent fit.
        assert await f.runs.list("al") == await f.runs.list("bo") == []
        assert [r.run_id for r in await f.runs.list("cy")] == [ids[2]]
        assert [r.run_id for r in await f.runs.list("di")] == [ids[3]]
        assert f.runs.finished_bytes <= 7000
        assert set(f.runs.user_ids()) == {"cy", "di"}


async def test_idle_users_are_forgotten_after_the_ttl_but_not_while_a_run_is_going() -> None:
    async with make_factory(engine={"finished_runs_ttl": 0.2}) as f:
        going = await f.submit_run(UserExecutionContext.for_user("bob"), "gated", {"key": "g"})
        done = await f.submit_run(UserExecutionContext.for_user("alice"), "quick", {"n": 1})
        await done.result()
        await _until(lambda: f.runs.lookup("alice", done.run_id) is not None, "alice's record")
        await _until(lambda: f.runs.lookup("alice", done.run_id) is None, "alice forgotten")
        assert await f.runs.list("alice") == []
        # Bob's run is in flight: his entry stays whatever the TTL.
        await asyncio.sleep(0.3)
        record = await f.runs.get("bob", going.run_id)
        assert isinstance(record, RunRecord) and record.status == "running"
        await f.runs.cancel("bob", going.run_id)
        await _until(lambda: "bob" not in f.runs.user_ids(), "bob forgotten")


async def test_shutdown_drains_submitted_runs_and_records_their_end() -> None:
    plugin = RunsPlugin()
    factory = make_factory(plugin=plugin, drain_timeout=0.2)
    ended = await factory.submit_run(UserExecutionContext.for_user("al"), "quick", {"n": 3})
    stuck = await factory.submit_run(UserExecutionContext.for_user("al"), "gated", {"key": "z"})
    await factory.shutdown()
    finished = await factory.runs.get("al", ended.run_id)
    assert finished is not None and finished.status == "succeeded"
    record = await factory.runs.get("al", stuck.run_id)
    assert record is not None and record.status == "cancelled" and record.finished_at is not None
    assert sorted(plugin.closed) == ["al", "al"]
    assert factory.get_factory_metrics()["engines_active"] == 0
    assert {r.status for r in await factory.runs.list("al")} <= TERMINAL


async def test_a_plugin_provides_the_run_registry() -> None:
    """``agentengine_run_registry``: the first plugin returning a ``RunRegistry`` gives
    ``factory.runs``, which ``submit_run`` stores each record through; anything else is refused
    naming the plugin."""
    from agentengine import AgentEngineError, RunRegistry

    stored: list[tuple[str, str]] = []

    class Recording(RunRegistry):
        async def store(self, record: RunRecord) -> None:
            stored.append((record.run_id, record.status))

    class Provider:
        name = "provider"

        @hookimpl
        def agentengine_run_registry(self, engine_settings: Any) -> RunRegistry:
            return Recording(engine_settings)

    class Wrong:
        name = "wrong"

        @hookimpl
        def agentengine_run_registry(self) -> object:
            return object()

    async with ExecutionEngineFactory(
        plugins=[Provider(), OutcomesPlugin()], load_entrypoints=False, max_concurrent_per_user=3
    ) as f:
        assert isinstance(f.runs, Recording) and f.runs.per_user_limit == 3
        handle = await f.submit_run(UserExecutionContext.for_user("ann"), "quick", {"n": 1})
        await handle.result()
        await f.runs.wait_finished(10)
        assert [run_id for run_id, _ in stored] == [handle.run_id, handle.run_id]
        assert stored[-1][1] == "succeeded"
    with pytest.raises(AgentEngineError, match=r"plugin 'wrong'.*must return a RunRegistry"):
        ExecutionEngineFactory(plugins=[Wrong()], load_entrypoints=False)
