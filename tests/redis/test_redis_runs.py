"""Run records on Redis (``[redis] queue = true``): ``factory.runs`` of any process answers for
any run of the caller, bounded and with a TTL, never for another user's run."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from agentengine import (
    EngineLimitError,
    ExecutionEngineFactory,
    RunContext,
    RunRecord,
    UserExecutionContext,
    agent,
    hookimpl,
)
from agentengine_redis import RedisPlugin, RedisRunRegistry
from agentengine_redis.layout import (
    dead_key,
    run_key_prefix,
    runs_done_key,
    runs_key,
    slots_key,
    wait_key,
)
from agentengine_redis.runs import QueuedRun
from agentengine_redis.worker import Worker
from redis_server import RedisProcess, unique_prefix, worker_process
from server_helpers import (
    CHATTER,
    SECRET,
    check_runs_end_once,
    make_token,
    serve_process,
    sse_items,
)
from websockets.asyncio.client import connect


def serve_env_for(url: str, prefix: str, queue: bool) -> dict[str, str]:
    return {
        "AGENTENGINE_REDIS__URL": url,
        "AGENTENGINE_REDIS__KEY_PREFIX": prefix,
        "AGENTENGINE_REDIS__QUEUE": "true" if queue else "false",
        "AGENTENGINE_JWT_SECRET": SECRET,
    }


def auth(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(user)}"}


async def start_run(port: int, user: str, **inputs: Any) -> str:
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.post(
            f"http://127.0.0.1:{port}/v1/runs",
            json={"agent": "chatter", "input": inputs},
            headers=auth(user),
        )
    assert r.status_code == 202, r.text
    return str(r.json()["run_id"])


@agent(name="napper")
async def napper(run: RunContext, seconds: float = 0.0, answer: str = "ok") -> str:
    await run.think("napping")
    await asyncio.sleep(seconds)
    return answer


class NapPlugin:
    name = "napplug"

    @hookimpl
    def agentengine_register_agents(self, registry: Any) -> None:
        registry.add(napper)


def factory(
    url: str,
    prefix: str,
    *,
    executes: bool = True,
    agents: bool = True,
    redis: dict[str, Any] | None = None,
    **engine: Any,
) -> ExecutionEngineFactory:
    """A factory with the run queue on Redis; ``executes``: it executes what it submits (as a
    worker's factory does) instead of queueing it."""
    plugin = RedisPlugin({"url": url, "key_prefix": prefix, "queue": True, **(redis or {})})
    plugins: list[Any] = [plugin, NapPlugin()] if agents else [plugin]
    f = ExecutionEngineFactory(plugins=plugins, load_entrypoints=False, **engine)
    if executes:
        f.runs.queues = False
    return f


async def until_done(f: ExecutionEngineFactory, user: str, run_id: str) -> RunRecord:
    async with asyncio.timeout(20):
        while True:
            record = await f.runs.get(user, run_id)
            if record is not None and record.done:
                return record
            await asyncio.sleep(0.02)


async def test_any_process_answers_for_any_run_of_the_caller(redis_process: RedisProcess) -> None:
    prefix = unique_prefix()
    async with factory(redis_process.url, prefix) as a, factory(redis_process.url, prefix) as b:
        assert isinstance(a.runs, RedisRunRegistry) and isinstance(b.runs, RedisRunRegistry)
        ctx = UserExecutionContext.for_user("ann")
        handle = await a.submit_run(ctx, "napper", {"seconds": 1.5, "answer": "hi"})
        # Seen from the other process at once, in flight, then executing.
        seen = await b.runs.get("ann", handle.run_id)
        assert seen is not None and not seen.done
        assert (seen.agent, seen.user_id, seen.thread_id) == ("napper", "ann", ctx.thread_id)
        async with asyncio.timeout(10):
            while seen is not None and seen.status == "queued":
                await asyncio.sleep(0.01)
                seen = await b.runs.get("ann", handle.run_id)
        assert seen is not None and seen.status == "running" and seen.started_at is not None
        # Another user's run id is not found, from either process.
        assert await b.runs.get("bob", handle.run_id) is None
        assert await a.runs.get("bob", handle.run_id) is None
        assert await b.runs.list("bob") == []
        done = await until_done(b, "ann", handle.run_id)
        assert (done.status, done.output, done.error) == ("succeeded", "hi", None)
        assert done.event_count >= 3 and done.finished_at is not None
        listed = await b.runs.list("ann")
        assert [r.run_id for r in listed] == [handle.run_id]
        assert listed[0].status == "succeeded"


async def test_a_cancel_is_seen_by_every_process_and_an_end_is_written_once(
    redis_process: RedisProcess,
) -> None:
    prefix = unique_prefix()
    async with factory(redis_process.url, prefix) as a, factory(redis_process.url, prefix) as b:
        handle = await a.submit_run(UserExecutionContext.for_user("ann"), "napper", {"seconds": 30})
        record = await a.runs.cancel("ann", handle.run_id)
        assert record is not None and record.status == "cancelled"
        seen = await b.runs.get("ann", handle.run_id)
        assert seen is not None and seen.status == "cancelled"
        # A stale write after the end (a slower process) changes nothing.
        stale = RunRecord(
            run_id=handle.run_id, user_id="ann", agent="napper", thread_id="t", status="running"
        )
        await b.runs.store(stale)
        again = await b.runs.get("ann", handle.run_id)
        assert again is not None and again.status == "cancelled"
        # Cancelling a run of another process answers its record (here: already ended).
        other = await b.runs.cancel("ann", handle.run_id)
        assert other is not None and other.status == "cancelled"
        assert await b.runs.cancel("bob", handle.run_id) is None


async def test_records_are_bounded_per_user_and_expire(redis_process: RedisProcess) -> None:
    prefix = unique_prefix()
    client = redis_process.client()
    try:
        async with factory(redis_process.url, prefix, max_concurrent_per_user=10) as a:
            a.runs.configure(finished_runs_kept=2, finished_runs_ttl=50.0)
            ctx = UserExecutionContext.for_user
            ids = []
            for i in range(4):
                h = await a.submit_run(ctx("ann"), "napper", {"answer": str(i)})
                ids.append(h.run_id)
                await until_done(a, "ann", h.run_id)
            async with factory(redis_process.url, prefix) as b:
                listed = await b.runs.list("ann")
                assert [r.run_id for r in listed] == ids[2:]
                assert [r.output for r in listed] == ["2", "3"]
                assert await b.runs.get("ann", ids[0]) is None
            assert not client.exists(run_key_prefix(prefix, "ann") + ids[0])
            for key in (
                run_key_prefix(prefix, "ann") + ids[3],
                runs_key(prefix, "ann"),
                runs_done_key(prefix, "ann"),
            ):
                assert 0 < client.pttl(key) <= 50_000, key
    finally:
        client.close()


async def test_queue_off_keeps_the_in_memory_registry(redis_process: RedisProcess) -> None:
    plugin = RedisPlugin({"url": redis_process.url, "key_prefix": unique_prefix()})
    async with ExecutionEngineFactory(plugins=[plugin], load_entrypoints=False) as f:
        assert type(f.runs).__name__ == "RunRegistry"


async def run_events(port: int, user: str, run_ids: set[str]) -> list[dict[str, Any]]:
    """The user's events (SSE, from the start), until every run of ``run_ids`` ended."""
    items: list[dict[str, Any]] = []
    async with (
        httpx.AsyncClient(timeout=60) as client,
        client.stream("GET", f"http://127.0.0.1:{port}/v1/events?after=0", headers=auth(user)) as r,
    ):
        assert r.status_code == 200
        async for item in sse_items(r):
            assert item.get("event") != "error", item
            items.append(item["data"])
            ended = {e["run_id"] for e in items if e.get("type") == "agent_completed"}
            if run_ids <= ended:
                return items
    raise AssertionError("stream ended early")


def test_serve_queues_runs_and_workers_execute_them(
    tmp_path: Path, redis_process: RedisProcess
) -> None:
    """Two serve instances queue, two ``agentengine worker`` processes execute: every run ends
    once, its events reach its user on both instances, and either instance answers for it."""
    prefix = unique_prefix()
    env = serve_env_for(redis_process.url, prefix, queue=True)
    for name in ("a", "b", "w1", "w2"):
        (tmp_path / name).mkdir()
    with (
        serve_process(tmp_path / "a", plugins={"chatplug": CHATTER}, env=env) as (_, a),
        serve_process(tmp_path / "b", plugins={"chatplug": CHATTER}, env=env) as (_, b),
        worker_process(tmp_path / "w1", env, "--concurrency", "4") as w1,
        worker_process(tmp_path / "w2", env, "--concurrency", "4") as w2,
    ):

        async def scenario() -> None:
            users = [f"u{i}" for i in range(20)]
            runs: dict[str, set[str]] = {u: set() for u in users}
            for i, user in enumerate(users):
                for port in (a, b):
                    runs[user].add(await start_run(port, user, count=3, delay=0.01 * (i % 4)))
            streams = await asyncio.wait_for(
                asyncio.gather(*(run_events(port, u, runs[u]) for u in users for port in (a, b))),
                60,
            )
            for (user, _port), items in zip(
                [(u, p) for u in users for p in (a, b)], streams, strict=True
            ):
                assert {e["user_id"] for e in items} == {user}
                assert set(check_runs_end_once(items)) == runs[user]
            async with httpx.AsyncClient(timeout=30) as client:
                for user in users:
                    for run_id in runs[user]:
                        for port in (a, b):
                            r = await client.get(
                                f"http://127.0.0.1:{port}/v1/runs/{run_id}", headers=auth(user)
                            )
                            assert r.status_code == 200, r.text
                            assert (r.json()["status"], r.json()["output"]) == ("succeeded", 3)
                        r = await client.get(
                            f"http://127.0.0.1:{a}/v1/runs/{run_id}", headers=auth("intruder")
                        )
                        assert r.status_code == 404
                    r = await client.get(f"http://127.0.0.1:{b}/v1/runs", headers=auth(user))
                    assert {x["run_id"] for x in r.json()["runs"]} == runs[user]

        asyncio.run(scenario())
        # Every run was executed by a worker, once (the workers count the runs they started).
        for proc in (w1, w2):
            proc.send_signal(signal.SIGTERM)
        worker_logs = [proc.communicate(timeout=30)[0] for proc in (w1, w2)]
        assert all(proc.returncode == 0 for proc in (w1, w2)), worker_logs
        started = [_runs_started(log) for log in worker_logs]
        # Both workers took part (each reads the work stream through the one group).
        assert sum(started) == 40 and all(started), worker_logs


def _runs_started(log: str) -> int:
    for line in log.splitlines():
        if "agentengine worker stopped" in line:
            return int(line.rsplit("runs=", 1)[1].split()[0])
    raise AssertionError(log)


def test_queue_off_serve_keeps_runs_local(tmp_path: Path, redis_process: RedisProcess) -> None:
    """Without ``queue``, an instance does not know another's runs (as before)."""
    prefix = unique_prefix()
    env = serve_env_for(redis_process.url, prefix, queue=False)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with (
        serve_process(tmp_path / "a", plugins={"chatplug": CHATTER}, env=env) as (_, a),
        serve_process(tmp_path / "b", plugins={"chatplug": CHATTER}, env=env) as (_, b),
    ):

        async def scenario() -> None:
            run_id = await start_run(a, "ann", count=1)
            async with httpx.AsyncClient(timeout=30) as client:
                r = await client.get(f"http://127.0.0.1:{b}/v1/runs/{run_id}", headers=auth("ann"))
                assert r.status_code == 404, r.text

        asyncio.run(scenario())


async def test_a_run_accepted_while_redis_is_down_still_runs(tmp_path: Path) -> None:
    """Writing the record of a run being accepted must not fail its submission (the run
    executes here and its events are buffered): the record is written when the run ends, or
    once Redis is back if it ended while Redis was away."""
    server = RedisProcess(tmp_path / "redis").start()
    prefix = unique_prefix()
    plugin = RedisPlugin(
        {
            "url": server.url,
            "key_prefix": prefix,
            "queue": True,
            "connect_timeout": 0.3,
            "socket_timeout": 0.3,
        }
    )
    try:
        async with ExecutionEngineFactory(
            plugins=[plugin, NapPlugin()], load_entrypoints=False
        ) as f:
            f.runs.queues = False  # it executes what it submits, as a worker does
            await f.runs.list("ann")  # connected
            server.kill()
            handle = await f.submit_run(UserExecutionContext.for_user("ann"), "napper", {})
            assert (await handle.result()).status.value == "succeeded"
            # Its end is written once Redis is back (not dropped): every process sees it.
            assert not await f.runs.wait_finished(0.5)
            local = await f.runs.get("ann", handle.run_id)
            assert local is not None and local.status == "succeeded"
            server.start()
            assert await f.runs.wait_finished(20)
            async with factory(server.url, prefix) as other:
                stored = await other.runs.get("ann", handle.run_id)
                assert stored is not None and stored.status == "succeeded"
    finally:
        server.stop()


async def test_submit_queues_and_a_worker_executes(redis_process: RedisProcess) -> None:
    """With the queue on, ``submit_run`` only queues (the record says ``queued`` while no
    worker runs); a ``Worker`` executes it with its own factory, events on the user's log."""
    prefix = unique_prefix()
    async with (
        factory(redis_process.url, prefix, executes=False) as api,
        factory(redis_process.url, prefix, executes=False) as executor,
    ):
        handle = await api.submit_run(
            UserExecutionContext.for_user("ann"), "napper", {"answer": "q"}
        )
        assert isinstance(handle, QueuedRun)
        await asyncio.sleep(0.2)
        record = await api.runs.get("ann", handle.run_id)
        assert record is not None and record.status == "queued"
        worker = Worker(executor, 2)
        assert executor.runs.queues is False
        task = asyncio.create_task(worker.run())
        try:
            result = await asyncio.wait_for(handle.result(), 20)
            assert (result.status.value, result.output) == ("succeeded", "q")
            events = [e async for e in handle]
            assert events[0].type == "agent_started"
            assert [e.type for e in events].count("agent_completed") == 1
            assert handle.done
        finally:
            worker.stop()
            await task
            await worker.drain()
        assert worker.started_runs == 1


async def test_a_run_a_worker_cannot_start_is_dead_lettered(redis_process: RedisProcess) -> None:
    """An agent the worker does not have: the entry goes to the dead-letter stream with the
    reason, and the run's record ends ``failed`` saying so."""
    prefix = unique_prefix()
    client = redis_process.client()
    try:
        async with (
            factory(redis_process.url, prefix, executes=False) as api,
            factory(redis_process.url, prefix, executes=False, agents=False) as executor,
        ):
            handle = await api.submit_run(UserExecutionContext.for_user("ann"), "napper", {})
            worker = Worker(executor, 1)
            task = asyncio.create_task(worker.run())
            try:
                result = await asyncio.wait_for(handle.result(), 20)
            finally:
                worker.stop()
                await task
                await worker.drain()
            assert result.status.value == "failed" and result.error_type == "WorkerStartError"
            assert "napper" in (result.error or "")
            dead = client.xrange(dead_key(prefix))
            assert len(dead) == 1 and b"UnknownAgentError" in dead[0][1][b"reason"]
    finally:
        client.close()


async def user_events(f: ExecutionEngineFactory, user: str, runs: int) -> list[Any]:
    """The user's events on the log, from the oldest, until ``runs`` runs ended."""
    events: list[Any] = []
    async with asyncio.timeout(60):
        async for item in f.events.subscribe(user, after=None):
            events.append(item)
            if sum(getattr(e, "type", None) == "agent_completed" for e in events) == runs:
                return events
    raise AssertionError("stream ended")


async def test_the_per_user_limit_holds_across_api_processes_and_workers(
    redis_process: RedisProcess,
) -> None:
    """Three API processes submit for one user at once, two workers of 4 execute, with
    ``max_concurrent_per_user = 2``: never more than 2 of the user's runs execute (from the
    order of the user's events, and from Redis), every run ends once; another user is not
    held up by them."""
    prefix = unique_prefix()
    url = redis_process.url
    limit = {"max_concurrent_per_user": 2}
    async with (
        factory(url, prefix, executes=False, **limit) as api1,
        factory(url, prefix, executes=False, **limit) as api2,
        factory(url, prefix, executes=False, **limit) as api3,
        factory(url, prefix, executes=False, **limit) as exec1,
        factory(url, prefix, executes=False, **limit) as exec2,
    ):
        workers = [Worker(exec1, 4), Worker(exec2, 4)]
        tasks = [asyncio.create_task(w.run()) for w in workers]
        client = redis_process.client()
        held: list[int] = []
        sampling = True

        async def sample() -> None:
            while sampling:
                held.append(client.zcard(slots_key(prefix, "ann")))
                await asyncio.sleep(0.005)

        sampler = asyncio.create_task(sample())
        try:
            apis = [api1, api2, api3]
            handles = await asyncio.gather(
                *(
                    apis[i % 3].submit_run(
                        UserExecutionContext.for_user("ann"), "napper", {"seconds": 0.1}
                    )
                    for i in range(9)
                )
            )
            other = await api1.submit_run(UserExecutionContext.for_user("bob"), "napper", {})
            results = await asyncio.wait_for(
                asyncio.gather(*(h.result() for h in [*handles, other])), 60
            )
            assert all(r.status.value == "succeeded" for r in results)
            events = await user_events(api2, "ann", 9)
        finally:
            sampling = False
            await sampler
            # Once every run ended, after the last periodic sample (which may predate the
            # last end by up to one sampling interval): nothing of the user's is held.
            held.append(client.zcard(slots_key(prefix, "ann")))
            client.close()
            for w in workers:
                w.stop()
            await asyncio.gather(*tasks)
            for w in workers:
                await w.drain()
        executing = peak = 0
        for event in events:
            if event.type == "agent_started":
                executing += 1
            elif event.type == "agent_completed":
                executing -= 1
            peak = max(peak, executing)
        assert peak <= 2, peak
        assert max(held) <= 2 and held[-1] == 0, held
        assert sorted(e.run_id for e in events if e.type == "agent_completed") == sorted(
            h.run_id for h in handles
        )
        assert sum(w.started_runs for w in workers) == 10


def most_at_once(events: list[dict[str, Any]]) -> tuple[int, int]:
    """The most runs executing at once, from the order of the user's log and from the events'
    times (``agent_started`` to the terminal ``agent_completed`` of each run)."""
    executing = by_order = 0
    for e in events:
        executing += {"agent_started": 1, "agent_completed": -1}.get(e["type"], 0)
        by_order = max(by_order, executing)
    # By time: an end at the same instant as a start is counted first (the slot was freed).
    edges = sorted(
        (datetime.fromisoformat(e["ts"]), 0 if e["type"] == "agent_completed" else 1)
        for e in events
        if e["type"] in ("agent_started", "agent_completed")
    )
    executing = by_time = 0
    for _, kind in edges:
        executing += 1 if kind else -1
        by_time = max(by_time, executing)
    return by_order, by_time


@pytest.mark.slow  # three serve and two worker processes
def test_the_per_user_limit_holds_across_serve_processes_and_worker_processes(
    tmp_path: Path, redis_process: RedisProcess
) -> None:
    """Three ``agentengine serve`` processes take one user's runs at the same moment, two
    ``agentengine worker --concurrency 4`` processes execute them, with
    ``max_concurrent_per_user = 2``: never more than 2 execute at once (from the user's
    events, their order and their times, and from the user's slots in Redis sampled
    throughout), the runs over the limit start in the order they were queued, and every run
    ends once."""
    prefix = unique_prefix()
    env = {
        **serve_env_for(redis_process.url, prefix, queue=True),
        "AGENTENGINE_ENGINE__MAX_CONCURRENT_PER_USER": "2",
    }
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
    client = redis_process.client()
    held: list[int] = []
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            held.append(int(client.zcard(slots_key(prefix, "ann"))))
            time.sleep(0.005)

    async def submit_at_once(ports: list[int], per_port: int) -> list[str]:
        return list(
            await asyncio.gather(
                *(
                    start_run(port, "ann", count=3, delay=0.05)
                    for _ in range(per_port)
                    for port in ports
                )
            )
        )

    with (
        serve_process(tmp_path / "a", plugins={"chatplug": CHATTER}, env=env) as (_, a),
        serve_process(tmp_path / "b", plugins={"chatplug": CHATTER}, env=env) as (_, b),
        serve_process(tmp_path / "c", plugins={"chatplug": CHATTER}, env=env) as (_, c),
    ):
        # First wave: queued by the three instances at once while no worker runs; Redis
        # decided their order (the user's wait list).
        first = asyncio.run(submit_at_once([a, b, c], 2))
        queued = [x.decode() for x in client.lrange(wait_key(prefix, "ann"), 0, -1)]
        assert sorted(queued) == sorted(first)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            with (
                worker_process(tmp_path / "w1", env, "--concurrency", "4"),
                worker_process(tmp_path / "w2", env, "--concurrency", "4"),
            ):
                # Second wave: submitted at once while the workers execute the first.
                second = asyncio.run(submit_at_once([a, b, c], 1))
                events = asyncio.run(run_events(b, "ann", {*first, *second}))
        finally:
            sampling.set()
            sampler.join(10)
            # Read after the last run ended: nothing of the user's is held any more.
            held.append(int(client.zcard(slots_key(prefix, "ann"))))
            client.close()
    assert set(check_runs_end_once(events)) == {*first, *second}
    assert {e["user_id"] for e in events} == {"ann"}
    by_order, by_time = most_at_once(events)
    assert by_order <= 2 and by_time <= 2, (by_order, by_time)
    assert held and max(held) <= 2 and held[-1] == 0, held
    assert max(held) == 2, held  # the limit was reached, so it was tested
    # The waiting runs are admitted in their queue's order: the first wave in the order
    # Redis queued it, then the second wave (queued behind it, its own order unknown here).
    # Two runs admitted one after the other may write their agent_started in either order
    # (two workers), but a run admitted while an earlier one was still waiting cannot: so a
    # run starts ahead of at most ``limit - 1`` runs queued before it.
    rank = {run_id: i for i, run_id in enumerate(queued)} | {r: len(queued) for r in second}
    started = [e["run_id"] for e in events if e["type"] == "agent_started"]
    overtaken = [
        sum(rank[earlier] < rank[run_id] for earlier in started[i + 1 :])
        for i, run_id in enumerate(started)
    ]
    assert max(overtaken) <= 1, (started, queued, second)


async def test_runs_over_the_limit_wait_in_order_up_to_a_bound(
    redis_process: RedisProcess,
) -> None:
    """With one slot, a user's queued runs start in the order they were submitted; beyond
    ``max_queued_per_user`` waiting, a submission is refused (``EngineLimitError``: 429)."""
    prefix = unique_prefix()
    url = redis_process.url
    opts: dict[str, Any] = {"max_concurrent_per_user": 1, "redis": {"max_queued_per_user": 4}}
    async with (
        factory(url, prefix, executes=False, **opts) as api,
        factory(url, prefix, executes=False, **opts) as executor,
    ):
        ctx = UserExecutionContext.for_user
        handles = [await api.submit_run(ctx("ann"), "napper", {"answer": str(i)}) for i in range(4)]
        with pytest.raises(EngineLimitError, match="max_queued_per_user = 4"):
            await api.submit_run(ctx("ann"), "napper", {})
        # Another user has a queue of their own.
        bob = await api.submit_run(ctx("bob"), "napper", {})
        worker = Worker(executor, 3)
        task = asyncio.create_task(worker.run())
        try:
            await asyncio.wait_for(asyncio.gather(*(h.result() for h in [*handles, bob])), 60)
            events = await user_events(api, "ann", 4)
        finally:
            worker.stop()
            await task
            await worker.drain()
        started = [e.run_id for e in events if e.type == "agent_started"]
        assert started == [h.run_id for h in handles]


async def test_a_drained_worker_ends_its_runs_and_frees_their_slots(
    redis_process: RedisProcess,
) -> None:
    """A worker stopped with a run in flight past ``drain_timeout``: the run ends
    ``cancelled`` with its terminal event, and its slot is free at once (the user's next run
    does not wait for the lease to expire)."""
    prefix = unique_prefix()
    url = redis_process.url
    client = redis_process.client()
    try:
        async with (
            factory(url, prefix, executes=False) as api,
            factory(url, prefix, executes=False, drain_timeout=0.2) as executor,
        ):
            handle = await api.submit_run(
                UserExecutionContext.for_user("ann"), "napper", {"seconds": 60}
            )
            worker = Worker(executor, 1)
            task = asyncio.create_task(worker.run())
            async with asyncio.timeout(20):
                while True:  # until the worker took the run's slot
                    if client.zcard(slots_key(prefix, "ann")):
                        break
                    await asyncio.sleep(0.01)
            worker.stop()
            await task
            await worker.drain()
            result = await asyncio.wait_for(handle.result(), 20)
            assert result.status.value == "cancelled"
            assert client.zcard(slots_key(prefix, "ann")) == 0
            events = await user_events(api, "ann", 1)
            assert [e.type for e in events].count("agent_completed") == 1
    finally:
        client.close()


def test_a_workers_concurrency_and_the_queued_bound_hold_through_real_processes(
    tmp_path: Path, redis_process: RedisProcess
) -> None:
    """Through a real serve with ``max_queued_per_user = 2`` and no worker yet: a user's third
    waiting run is refused with ``429`` (REST and WebSocket), another user's runs are not.
    A run sent over the WebSocket is queued too (``run_accepted``). Then ``agentengine worker
    --concurrency 2`` executes the seven waiting runs of four users:
    never more than 2 at once in that process (from the events' times), every run ends once."""
    prefix = unique_prefix()
    env = {
        **serve_env_for(redis_process.url, prefix, queue=True),
        "AGENTENGINE_REDIS__MAX_QUEUED_PER_USER": "2",
        "AGENTENGINE_ENGINE__MAX_CONCURRENT_PER_USER": "10",
    }
    (tmp_path / "a").mkdir()
    users = ["ann", "bob", "cid"]
    with serve_process(tmp_path / "a", plugins={"chatplug": CHATTER}, env=env) as (_, port):

        async def submit() -> dict[str, set[str]]:
            runs = {
                u: {await start_run(port, u, count=3, delay=0.1) for _ in range(2)} for u in users
            }
            async with httpx.AsyncClient(timeout=30) as client:
                r = await client.post(
                    f"http://127.0.0.1:{port}/v1/runs",
                    json={"agent": "chatter", "input": {}},
                    headers=auth("ann"),
                )
            assert r.status_code == 429, r.text
            assert r.json()["error"] == "too_many_runs" and int(r.headers["Retry-After"]) >= 1
            async with connect(
                f"ws://127.0.0.1:{port}/v1/ws",
                subprotocols=["bearer", make_token("bob")],  # type: ignore[list-item]
                open_timeout=20,
            ) as ws:
                await ws.send(json.dumps({"type": "run", "id": 1, "agent": "chatter", "input": {}}))
                async with asyncio.timeout(20):
                    while (reply := json.loads(await ws.recv())).get("id") != 1:
                        pass
            assert reply["type"] == "error" and reply["error"] == "too_many_runs", reply
            # A run over the WebSocket is queued like one over REST (the same answer as
            # in-process).
            async with connect(
                f"ws://127.0.0.1:{port}/v1/ws",
                subprotocols=["bearer", make_token("dan")],  # type: ignore[list-item]
                open_timeout=20,
            ) as ws:
                await ws.send(
                    json.dumps({"type": "run", "id": 1, "agent": "chatter", "input": {"count": 3}})
                )
                async with asyncio.timeout(20):
                    while (reply := json.loads(await ws.recv())).get("id") != 1:
                        pass
            assert reply["type"] == "run_accepted", reply
            runs["dan"] = {reply["run_id"]}
            return runs

        runs = asyncio.run(submit())
        with worker_process(tmp_path / "w", env, "--concurrency", "2"):

            async def collect() -> list[list[dict[str, Any]]]:
                return list(
                    await asyncio.wait_for(
                        asyncio.gather(*(run_events(port, u, runs[u]) for u in runs)), 60
                    )
                )

            streams = asyncio.run(collect())
    everything: list[dict[str, Any]] = []
    assert list(runs) == [*users, "dan"]
    for user, items in zip(runs, streams, strict=True):
        assert set(check_runs_end_once(items)) == runs[user]
        everything += items
    _, by_time = most_at_once(everything)
    assert by_time == 2, by_time


async def test_run_timeout_holds_on_the_worker_that_executes_the_run(
    redis_process: RedisProcess,
) -> None:
    """A queued run's deadline holds on its worker: a run longer than its timeout ends
    ``timed_out`` (``TimeoutError``) with one terminal event, its record saying the same in
    every process, and its slot is freed."""
    prefix = unique_prefix()
    client = redis_process.client()
    try:
        async with (
            factory(redis_process.url, prefix, executes=False) as api,
            factory(redis_process.url, prefix, executes=False) as executor,
        ):
            handle = await api.submit_run(
                UserExecutionContext.for_user("ann"), "napper", {"seconds": 60}, timeout=0.5
            )
            worker = Worker(executor, 1)
            task = asyncio.create_task(worker.run())
            try:
                result = await asyncio.wait_for(handle.result(), 20)
                events = await user_events(api, "ann", 1)
            finally:
                worker.stop()
                await task
                await worker.drain()
            assert (result.status.value, result.error_type) == ("timed_out", "TimeoutError")
            assert events[0].type == "agent_started"
            assert [e.type for e in events].count("agent_completed") == 1
            assert events[-1].status.value == "timed_out"
            record = await until_done(api, "ann", handle.run_id)
            assert (record.status, record.error_type) == ("timed_out", "TimeoutError")
            assert client.zcard(slots_key(prefix, "ann")) == 0
    finally:
        client.close()
