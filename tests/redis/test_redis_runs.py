"""Run records on Redis (``[redis] queue = true``): ``factory.runs`` of any process answers for
any run of the caller, bounded and with a TTL, never for another user's run."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path
from typing import Any

import httpx
from agentengine import (
    ExecutionEngineFactory,
    RunContext,
    RunRecord,
    UserExecutionContext,
    agent,
    hookimpl,
)
from agentengine_redis import RedisPlugin, RedisRunRegistry
from agentengine_redis.layout import run_key_prefix, runs_done_key, runs_key
from redis_server import RedisProcess, unique_prefix
from server_helpers import SECRET, make_token, serve_process

CHATTER = textwrap.dedent(
    """
    import asyncio
    from agentengine import RunContext, agent, hookimpl

    @agent(name="chatter")
    async def chatter(run: RunContext, count: int = 5, delay: float = 0.0) -> int:
        for i in range(count):
            await run.think(f"step {i}")
            await asyncio.sleep(delay)
        return count

    class ChatPlugin:
        name = "chatplug"

        @hookimpl
        def agentengine_register_agents(self, registry):
            registry.add(chatter)

    plugin = ChatPlugin()
    """
)


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


def factory(url: str, prefix: str, **engine: Any) -> ExecutionEngineFactory:
    plugin = RedisPlugin({"url": url, "key_prefix": prefix, "queue": True})
    return ExecutionEngineFactory(plugins=[plugin, NapPlugin()], load_entrypoints=False, **engine)


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


def test_two_serve_instances_answer_for_each_others_runs(
    tmp_path: Path, redis_process: RedisProcess
) -> None:
    prefix = unique_prefix()
    env = serve_env_for(redis_process.url, prefix, queue=True)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with (
        serve_process(tmp_path / "a", plugins={"chatplug": CHATTER}, env=env) as (_, a),
        serve_process(tmp_path / "b", plugins={"chatplug": CHATTER}, env=env) as (_, b),
    ):

        async def scenario() -> None:
            quick = await start_run(a, "ann", count=2)
            slow = await start_run(a, "ann", count=200, delay=0.1)
            async with httpx.AsyncClient(timeout=30) as client:
                # The slow run, started on a, seen and cancelled through b.
                r = await client.get(f"http://127.0.0.1:{b}/v1/runs/{slow}", headers=auth("ann"))
                assert r.status_code == 200 and r.json()["status"] == "running", r.text
                r = await client.get(f"http://127.0.0.1:{b}/v1/runs/{slow}", headers=auth("bob"))
                assert r.status_code == 404, r.text
                async with asyncio.timeout(20):
                    while True:
                        r = await client.get(
                            f"http://127.0.0.1:{b}/v1/runs/{quick}", headers=auth("ann")
                        )
                        assert r.status_code == 200, r.text
                        if r.json()["status"] != "running":
                            break
                        await asyncio.sleep(0.05)
                assert (r.json()["status"], r.json()["output"]) == ("succeeded", 2)
                r = await client.get(f"http://127.0.0.1:{b}/v1/runs", headers=auth("ann"))
                assert [x["run_id"] for x in r.json()["runs"]] == [quick, slow]
                r = await client.get(f"http://127.0.0.1:{b}/v1/runs", headers=auth("bob"))
                assert r.json()["runs"] == []
                r = await client.post(
                    f"http://127.0.0.1:{a}/v1/runs/{slow}/cancel", headers=auth("ann")
                )
                assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
                r = await client.get(f"http://127.0.0.1:{b}/v1/runs/{slow}", headers=auth("ann"))
                assert r.json()["status"] == "cancelled", r.text

        asyncio.run(scenario())


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
    executes here and its events are buffered): the record is written when the run ends."""
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
            await f.runs.list("ann")  # connected
            server.kill()
            handle = await f.submit_run(UserExecutionContext.for_user("ann"), "napper", {})
            assert (await handle.result()).status.value == "succeeded"
            assert await f.runs.wait_finished(20)
            local = await f.runs.get("ann", handle.run_id)
            assert local is not None and local.status == "succeeded"
    finally:
        server.stop()
