"""Runs on workers that die, pause, are cancelled from elsewhere or are retried
(``[redis] queue = true``): every run still ends with exactly one terminal event, written
once by Redis (the finish path), and a worker presumed dead can no longer write for its run.

Real redis-server, real ``agentengine worker`` subprocesses (SIGKILL, SIGSTOP/SIGCONT), a real
``agentengine serve`` for the cancel over HTTP; the API side is an in-process factory where
that is all the test needs. Timing is never asserted: conditions are polled with generous
deadlines."""

from __future__ import annotations

import asyncio
import json
import random
import re
import signal
import subprocess
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from agentengine import (
    ExecutionEngineFactory,
    UserExecutionContext,
    parse_event,
)
from agentengine_redis import RedisPlugin
from agentengine_redis.layout import lost_key, run_key_prefix, slots_key, stream_key
from agentengine_redis.runs import RedisRunRegistry
from agentengine_redis.sink import Fence
from agentengine_redis.worker import Worker
from invariants import thinking
from redis_server import RedisProcess, unique_prefix
from server_helpers import (
    AGENTENGINE,
    SECRET,
    check_runs_end_once,
    make_token,
    serve_env,
    serve_process,
)

#: The agents every process of these tests has: ``slow`` thinks, naps in a tool, thinks.
SLOW = textwrap.dedent(
    """
    import asyncio
    from agentengine import RunContext, agent, hookimpl, tool

    @tool
    async def nap(seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "rested"

    @agent(name="slow")
    async def slow(run: RunContext, seconds: float = 0.0) -> str:
        await run.think("before the tool")
        await run.call_tool("nap", {"seconds": seconds})
        await run.think("after the tool")
        return "done"

    class SlowPlugin:
        name = "slowplug"

        @hookimpl
        def agentengine_register_tools(self, registry):
            registry.add(nap)

        @hookimpl
        def agentengine_register_agents(self, registry):
            registry.add(slow)

    plugin = SlowPlugin()
    """
)

LEASE = 1.0


def slow_plugin() -> Any:
    namespace: dict[str, Any] = {}
    exec(compile(SLOW, "slowplug", "exec"), namespace)
    return namespace["plugin"]


def redis_env(url: str, prefix: str, **extra: str) -> dict[str, str]:
    return {
        "AGENTENGINE_REDIS__URL": url,
        "AGENTENGINE_REDIS__KEY_PREFIX": prefix,
        "AGENTENGINE_REDIS__QUEUE": "true",
        "AGENTENGINE_REDIS__LEASE": str(LEASE),
        "AGENTENGINE_JWT_SECRET": SECRET,
        **extra,
    }


def api(url: str, prefix: str, *, redis: dict[str, Any] | None = None, **engine: Any) -> Any:
    """An in-process API instance: it queues what it submits (serve with queue = true)."""
    plugin = RedisPlugin(
        {"url": url, "key_prefix": prefix, "queue": True, "lease": LEASE, **(redis or {})}
    )
    return ExecutionEngineFactory(plugins=[plugin, slow_plugin()], load_entrypoints=False, **engine)


class WorkerProcess:
    """``agentengine worker`` with the slow agent; its output goes to a file (read it with
    ``log()``), so that a paused or busy worker never blocks on a full pipe."""

    def __init__(self, path: Path, name: str, env: dict[str, str], concurrency: int) -> None:
        (path / "slowplug.py").write_text(SLOW)
        self.logfile = path / f"{name}.log"
        self.out = self.logfile.open("w")
        self.proc = subprocess.Popen(
            [
                AGENTENGINE,
                "worker",
                "--concurrency",
                str(concurrency),
                "--plugin",
                "slowplug:plugin",
            ],
            env=serve_env(path, **env),
            stdout=self.out,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 60
        while "agentengine worker ready" not in self.log():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the worker did not start:\n{self.log()}")
            time.sleep(0.05)
        found = re.search(r"consumer=(worker-[0-9a-f]+)", self.log())
        assert found is not None, self.log()
        self.consumer = found.group(1)

    def log(self) -> str:
        return self.logfile.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
        self.proc.wait(10)
        self.out.close()


@contextmanager
def workers(path: Path, env: dict[str, str]) -> Iterator[Callable[..., WorkerProcess]]:
    """Start workers with ``start(name, concurrency)``; all are killed on exit."""
    started: list[WorkerProcess] = []

    def start(name: str, concurrency: int = 1) -> WorkerProcess:
        started.append(WorkerProcess(path, name, env, concurrency))
        return started[-1]

    try:
        yield start
    finally:
        for w in started:
            w.close()


def stored(client: Any, prefix: str, user: str, run_id: str) -> list[dict[str, Any]]:
    """The run's events as stored on the user's log (each must parse as an event), with the
    attempt that wrote it under ``_attempt``."""
    out = []
    for _, fields in client.xrange(stream_key(prefix, user)):
        if b"e" not in fields:
            continue
        event = parse_event(fields[b"e"]).to_wire()
        if event["run_id"] == run_id:
            event["_attempt"] = fields[b"a"].decode()
            out.append(event)
    return out


def record(client: Any, prefix: str, user: str, run_id: str) -> dict[str, Any] | None:
    raw = client.hget(run_key_prefix(prefix, user) + run_id, "r")
    return None if raw is None else json.loads(raw)


async def until(predicate: Callable[[], Any], what: str, timeout: float = 45) -> Any:
    """Poll ``predicate`` until it returns something true; that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def ended(client: Any, prefix: str, user: str, run_id: str) -> Callable[[], Any]:
    def check() -> Any:
        found = record(client, prefix, user, run_id)
        return found if found is not None and found["finished_at"] is not None else None

    return check


def reached(client: Any, prefix: str, user: str, run_id: str, kind: str) -> Callable[[], bool]:
    return lambda: any(e["type"] == kind for e in stored(client, prefix, user, run_id))


async def submit(f: Any, user: str, seconds: float, **kwargs: Any) -> str:
    handle = await f.submit_run(
        UserExecutionContext.for_user(user), "slow", {"seconds": seconds}, **kwargs
    )
    return str(handle.run_id)


def plain(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if k != "_attempt"} for e in events]


def check_lost(events: list[dict[str, Any]], error_type: str = "WorkerLostError") -> None:
    """One run's events: whole (1..n, started first, one terminal last) and ending with the
    reaper's agent_error then agent_completed."""
    check_runs_end_once(plain(events))
    assert [e["type"] for e in events[-2:]] == ["agent_error", "agent_completed"], events
    assert events[-2]["error_type"] == error_type


async def test_a_killed_worker_s_run_ends_once_and_the_user_s_next_run_starts(
    tmp_path: Path, redis_process: RedisProcess
) -> None:
    """SIGKILL a worker mid-tool: its run ends with exactly one terminal pair (agent_error
    WorkerLostError, agent_completed failed) written by another worker's reaper, its record
    says the same, its slot is freed and the user's next waiting run starts; the other
    worker's own run is not disturbed."""
    prefix = unique_prefix()
    client = redis_process.client()
    env = redis_env(redis_process.url, prefix)
    try:
        async with api(redis_process.url, prefix, max_concurrent_per_user=1) as f:
            with workers(tmp_path, env) as start:
                doomed = start("a")
                lost = await submit(f, "ann", 60)
                following = await submit(f, "ann", 0)  # waits for ann's only slot
                await until(reached(client, prefix, "ann", lost, "tool_executing"), "mid-tool")
                survivor = start("b")
                bob = await submit(f, "bob", 2)  # a is busy: b takes it
                await until(reached(client, prefix, "bob", bob, "tool_executing"), "bob runs")
                doomed.signal(signal.SIGKILL)
                doomed.proc.wait(10)

                end = await until(ended(client, prefix, "ann", lost), "the lost run's end")
                assert end["status"] == "failed" and end["error_type"] == "WorkerLostError"
                assert "worker" in end["error"] and "lost" in end["error"]
                events = stored(client, prefix, "ann", lost)
                check_lost(events)
                assert events[-1]["status"] == "failed" and "lost" in events[-1]["error"]
                assert end["event_count"] == len(events)
                assert client.get(lost_key(prefix)) == b"1"

                nxt = await until(ended(client, prefix, "ann", following), "the next run")
                assert nxt["status"] == "succeeded"
                other = await until(ended(client, prefix, "bob", bob), "bob's run")
                assert other["status"] == "succeeded"
                check_runs_end_once(plain(stored(client, prefix, "bob", bob)))
                assert client.zcard(slots_key(prefix, "ann")) == 0
                assert survivor.proc.poll() is None
                # Handed back by the API too.
                got = await f.runs.get("ann", lost)
                assert got is not None and got.error_type == "WorkerLostError"
    finally:
        client.close()


async def test_a_paused_worker_that_comes_back_cannot_write_for_its_run(
    tmp_path: Path, redis_process: RedisProcess
) -> None:
    """SIGSTOP a worker mid-tool past its lease: another worker's reaper ends its run. After
    SIGCONT its late writes (the tool's end, its thinking, its terminal event) are refused,
    it stops the run and says so in its log; the run still has exactly one terminal event,
    and the worker goes on executing new runs."""
    prefix = unique_prefix()
    client = redis_process.client()
    env = redis_env(redis_process.url, prefix)
    try:
        async with api(redis_process.url, prefix) as f:
            with workers(tmp_path, env) as start:
                paused = start("a")
                run_id = await submit(f, "ann", 2)
                await until(reached(client, prefix, "ann", run_id, "tool_executing"), "mid-tool")
                start("b")
                paused.signal(signal.SIGSTOP)
                end = await until(ended(client, prefix, "ann", run_id), "the reaper's end")
                assert end["error_type"] == "WorkerLostError"
                before = stored(client, prefix, "ann", run_id)
                paused.signal(signal.SIGCONT)
                await until(lambda: "taken as lost" in paused.log(), "the worker stopping it")
                # Its tool's end and what follows would have come by now; refused.
                await asyncio.sleep(1.0)
                after = stored(client, prefix, "ann", run_id)
                assert after == before
                check_lost(after)
                assert record(client, prefix, "ann", run_id) == end
                assert paused.proc.poll() is None
                # Still a working worker (either may take it).
                again = await submit(f, "ann", 0)
                assert (await until(ended(client, prefix, "ann", again), "a new run"))[
                    "status"
                ] == "succeeded"
    finally:
        client.close()


@pytest.mark.slow  # four worker processes, two of them killed
async def test_an_agent_that_opts_in_is_retried_on_worker_loss_up_to_its_bound(
    tmp_path: Path, redis_process: RedisProcess
) -> None:
    """``[redis] retry_on_worker_loss = {slow = 2}``: a run whose worker dies is executed
    again (an agent_thinking event says which attempt; the events go on without a gap, one
    agent_started, one terminal event; each entry carries its attempt). When the second
    attempt's worker dies too, the bound holds: the run ends failed, WorkerLostError."""
    prefix = unique_prefix()
    client = redis_process.client()
    retry = "slow=2"
    env = redis_env(redis_process.url, prefix, AGENTENGINE_REDIS__RETRY_ON_WORKER_LOSS=retry)
    try:
        async with api(redis_process.url, prefix, redis={"retry_on_worker_loss": {"slow": 2}}) as f:
            with workers(tmp_path, env) as start:
                first = start("a")
                run_id = await submit(f, "ann", 3)
                await until(reached(client, prefix, "ann", run_id, "tool_executing"), "mid-tool")
                second = start("b")
                first.signal(signal.SIGKILL)
                end = await until(ended(client, prefix, "ann", run_id), "the retried run")
                assert end["status"] == "succeeded", end
                events = stored(client, prefix, "ann", run_id)
                check_runs_end_once(plain(events))
                retried = [e for e in events if "retrying" in e.get("text", "")]
                assert len(retried) == 1 and "attempt 2 of 2" in retried[0]["text"]
                assert {e["_attempt"] for e in events} == {"1", "2"}
                assert events[-1]["_attempt"] == "2" and events[0]["_attempt"] == "1"

                # Both attempts lost: no third.
                bounded = await submit(f, "ann", 60)
                await until(reached(client, prefix, "ann", bounded, "tool_executing"), "1st")
                executing = second  # the only worker alive
                third = start("c")
                executing.signal(signal.SIGKILL)

                def attempt_2_mid_tool() -> bool:
                    return any(
                        e["type"] == "tool_executing" and e["_attempt"] == "2"
                        for e in stored(client, prefix, "ann", bounded)
                    )

                await until(attempt_2_mid_tool, "the second attempt mid-tool")
                start("d")
                third.signal(signal.SIGKILL)
                end = await until(ended(client, prefix, "ann", bounded), "the bound")
                assert end["status"] == "failed" and end["error_type"] == "WorkerLostError"
                events = stored(client, prefix, "ann", bounded)
                check_lost(events)
                assert sum("retrying" in e.get("text", "") for e in events) == 1
                assert client.get(lost_key(prefix)) == b"3"
    finally:
        client.close()


async def test_a_run_whose_worker_died_after_its_deadline_ends_timed_out(
    tmp_path: Path, redis_process: RedisProcess
) -> None:
    """The deadline lives in the run's hash: a run whose worker died and that is found by the
    reaper after its deadline ends ``timed_out`` (TimeoutError), not failed."""
    prefix = unique_prefix()
    client = redis_process.client()
    env = redis_env(redis_process.url, prefix)
    try:
        async with api(redis_process.url, prefix) as f:
            with workers(tmp_path, env) as start:
                doomed = start("a")
                run_id = await submit(f, "ann", 60, timeout=1.5)
                await until(reached(client, prefix, "ann", run_id, "tool_executing"), "mid-tool")
                doomed.signal(signal.SIGKILL)
                doomed.proc.wait(10)
                deadline = int(client.hget(run_key_prefix(prefix, "ann") + run_id, "d"))

                def past() -> bool:
                    seconds, micros = client.time()
                    return bool(seconds * 1000 + micros // 1000 > deadline)

                await until(past, "the deadline")  # no reaper ran yet: a was the only worker
                start("b")
                end = await until(ended(client, prefix, "ann", run_id), "the reaper's end")
                assert end["status"] == "timed_out" and end["error_type"] == "TimeoutError"
                events = stored(client, prefix, "ann", run_id)
                check_lost(events, "TimeoutError")
                assert events[-1]["status"] == "timed_out"
                assert "deadline of 1.5s" in events[-1]["error"]
    finally:
        client.close()


def auth(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(user)}"}


async def test_a_cancel_from_any_instance_reaches_the_run_on_its_worker(
    tmp_path: Path, redis_process: RedisProcess
) -> None:
    """A run submitted on one instance and executing on a worker is cancelled through
    another instance (``POST /v1/runs/{id}/cancel`` on a real serve) and through
    ``factory.runs.cancel``: the answer already says ``cancelled``, the run's events end
    once with ``agent_completed`` cancelled, the record agrees, the worker goes on."""
    prefix = unique_prefix()
    client = redis_process.client()
    env = redis_env(redis_process.url, prefix)
    try:
        async with api(redis_process.url, prefix) as f:
            with (
                workers(tmp_path, env) as start,
                serve_process(tmp_path, plugins={"slowplug": SLOW}, env=env) as (_, port),
            ):
                worker = start("a", concurrency=2)
                over_http = await submit(f, "ann", 60)
                direct = await submit(f, "ann", 60)
                for run_id in (over_http, direct):
                    await until(reached(client, prefix, "ann", run_id, "tool_executing"), "mid")
                async with httpx.AsyncClient(timeout=30) as http:
                    r = await http.post(
                        f"http://127.0.0.1:{port}/v1/runs/{over_http}/cancel", headers=auth("ann")
                    )
                    assert r.status_code == 200, r.text
                    assert r.json()["status"] == "cancelled"
                    other = await http.post(
                        f"http://127.0.0.1:{port}/v1/runs/{direct}/cancel", headers=auth("bob")
                    )
                    assert other.status_code == 404
                got = await f.runs.cancel("ann", direct)
                assert got is not None and got.status == "cancelled"
                for run_id in (over_http, direct):
                    events = stored(client, prefix, "ann", run_id)
                    check_runs_end_once(plain(events))
                    assert events[-1]["status"] == "cancelled"
                    end = record(client, prefix, "ann", run_id)
                    assert end is not None and end["status"] == "cancelled"
                assert client.zcard(slots_key(prefix, "ann")) == 0
                again = await submit(f, "ann", 0)
                done = await until(ended(client, prefix, "ann", again), "a new run")
                assert done["status"] == "succeeded"
                assert worker.proc.poll() is None
    finally:
        client.close()


async def test_a_queued_run_cancelled_ends_at_once_and_its_agent_never_runs(
    redis_process: RedisProcess,
) -> None:
    """Cancelled while queued (from another instance): it ends at once, through the finish
    path, with its agent_started and agent_completed cancelled; the worker that later takes
    its queue entry skips it, and the user's next run executes."""
    prefix = unique_prefix()
    client = redis_process.client()
    url = redis_process.url
    try:
        async with api(url, prefix) as a, api(url, prefix) as b, api(url, prefix) as executor:
            run_id = await submit(a, "ann", 0)
            got = await b.runs.cancel("ann", run_id)
            assert got is not None and got.status == "cancelled" and got.done
            assert got.error_type == "CancelledError" and got.event_count == 2
            events = stored(client, prefix, "ann", run_id)
            assert [(e["type"], e["seq"]) for e in events] == [
                ("agent_started", 1),
                ("agent_completed", 2),
            ]
            assert events[0]["input"] == {"seconds": 0}
            assert events[1]["status"] == "cancelled"
            assert await b.runs.cancel("ann", run_id) == got  # ended: answered as it is
            worker = Worker(executor, 2)
            task = asyncio.create_task(worker.run())
            try:
                nxt = await submit(a, "ann", 0)
                done = await until(ended(client, prefix, "ann", nxt), "the next run")
                assert done["status"] == "succeeded"
            finally:
                worker.stop()
                await task
                await worker.drain()
            assert worker.started_runs == 1
            assert stored(client, prefix, "ann", run_id) == events
    finally:
        client.close()


async def test_the_append_refuses_a_stale_attempt_and_tells_its_run(
    redis_process: RedisProcess,
) -> None:
    """Fencing in the append script: an event of an attempt that is not the run's current
    one (or of a run that ended) is not stored, the sink says so once (the worker stops the
    run); the current attempt's events are stored."""
    prefix = unique_prefix()
    client = redis_process.client()
    f = ExecutionEngineFactory(
        plugins=[RedisPlugin({"url": redis_process.url, "key_prefix": prefix, "queue": True})],
        load_entrypoints=False,
    )
    try:
        async with f:
            registry = f.runs
            assert isinstance(registry, RedisRunRegistry)
            sink = registry.sink
            rec = run_key_prefix(prefix, "ann") + "r"
            client.hset(rec, mapping={"a": 2, "k": 1})
            told: list[str] = []

            def final(event: Any, error_type: str | None) -> bytes:
                return b"{}"

            sink.fence("r", Fence(rec, 1, final, lambda: told.append("stale")))
            for seq in (1, 2):
                sink.publish(thinking("ann", seq))
            await sink.flush()
            assert told == ["stale"]
            assert client.xlen(stream_key(prefix, "ann")) == 0
            assert sink.metrics["events_refused"] == 2
            sink.fence("r", Fence(rec, 2, final, lambda: told.append("current")))
            sink.publish(thinking("ann", 3))
            await sink.flush()
            assert told == ["stale"] and client.xlen(stream_key(prefix, "ann")) == 1
            assert client.hget(rec, "n") == b"3"
            client.hset(rec, "k", 2)  # ended (by another writer): refused too
            sink.publish(thinking("ann", 4))
            await sink.flush()
            assert told == ["stale", "current"] and client.xlen(stream_key(prefix, "ann")) == 1
    finally:
        client.close()


async def test_a_thousand_races_between_cancel_and_completion_end_each_run_once(
    redis_process: RedisProcess,
) -> None:
    """1,000 runs of 20 users, each cancelled from another instance at a random moment of
    its short life (queued, starting, executing, ending): every run ends exactly once, its
    terminal event's status is its record's status, and each user's stream is whole."""
    prefix = unique_prefix()
    client = redis_process.client()
    url = redis_process.url
    rng = random.Random(13)
    limits = {"max_concurrent_per_user": 10, "redis": {"max_queued_per_user": 100}}
    users = [f"u{i}" for i in range(20)]
    try:
        async with (
            api(url, prefix, **limits) as a,
            api(url, prefix, **limits) as b,
            api(url, prefix, **limits) as executor,
        ):
            worker = Worker(executor, 200)
            task = asyncio.create_task(worker.run())

            async def race(user: str) -> str:
                run_id = await submit(a, user, rng.uniform(0, 0.03))
                await asyncio.sleep(rng.uniform(0, 0.06))
                await b.runs.cancel(user, run_id)
                return run_id

            try:
                runs: dict[str, list[str]] = {u: [] for u in users}
                for _ in range(10):  # 100 at a time
                    batch = [u for u in users for _ in range(5)]
                    for user, run_id in zip(
                        batch, await asyncio.gather(*(race(u) for u in batch)), strict=True
                    ):
                        runs[user].append(run_id)
                for user, ids in runs.items():
                    for run_id in ids:
                        await until(ended(client, prefix, user, run_id), "every end", 120)
            finally:
                worker.stop()
                await task
                await worker.drain()
        statuses: dict[str, int] = {}
        for user, ids in runs.items():
            events = []
            for _, fields in client.xrange(stream_key(prefix, user)):
                events.append(parse_event(fields[b"e"]).to_wire())
            by_run = check_runs_end_once(events)
            assert sorted(by_run) == sorted(ids)
            for run_id in ids:
                end = record(client, prefix, user, run_id)
                assert end is not None
                assert by_run[run_id][-1]["status"] == end["status"], (run_id, end)
                statuses[end["status"]] = statuses.get(end["status"], 0) + 1
        assert sum(statuses.values()) == 1000
        assert set(statuses) <= {"succeeded", "cancelled"}, statuses
        assert statuses.get("cancelled", 0) > 0
    finally:
        client.close()


def test_retry_on_worker_loss_is_read_from_text_or_refused_clearly() -> None:
    from agentengine_redis import RedisSettings
    from pydantic import ValidationError

    assert RedisSettings(retry_on_worker_loss="a=2, b=3").retry_on_worker_loss == {  # type: ignore[arg-type]
        "a": 2,
        "b": 3,
    }
    assert RedisSettings(retry_on_worker_loss='{"a": 2}').retry_on_worker_loss == {"a": 2}  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="agent=attempts"):
        RedisSettings(retry_on_worker_loss="a")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="1 to 100"):
        RedisSettings(retry_on_worker_loss={"a": 0})


async def test_a_sigterm_drains_the_runs_in_flight_and_leaves_no_entry_behind(
    tmp_path: Path, redis_process: RedisProcess
) -> None:
    """SIGTERM a worker with two runs mid-tool and ``drain_timeout = 1``: the short one
    finishes within the drain, the long one ends ``cancelled``, each with one terminal event;
    the worker exits 0, its slots are free, no work-stream entry is left pending (nothing for
    a reaper to take as lost) and no run is counted lost."""
    prefix = unique_prefix()
    client = redis_process.client()
    env = redis_env(redis_process.url, prefix, AGENTENGINE_ENGINE__DRAIN_TIMEOUT="1")
    try:
        async with api(redis_process.url, prefix) as f:
            with workers(tmp_path, env) as start:
                worker = start("a", concurrency=2)
                short = await submit(f, "ann", 0.5)
                long = await submit(f, "ann", 60)
                for run_id in (short, long):
                    await until(reached(client, prefix, "ann", run_id, "tool_executing"), "mid")
                worker.signal(signal.SIGTERM)
                assert worker.proc.wait(30) == 0, worker.log()
                ends = {
                    run_id: await until(ended(client, prefix, "ann", run_id), "its end")
                    for run_id in (short, long)
                }
                assert ends[short]["status"] == "succeeded"
                assert ends[long]["status"] == "cancelled"
                for run_id in (short, long):
                    events = stored(client, prefix, "ann", run_id)
                    check_runs_end_once(plain(events))
                    assert events[-1]["status"] == ends[run_id]["status"]
                assert client.zcard(slots_key(prefix, "ann")) == 0
                assert client.xpending(f"{prefix}queue:work", "workers")["pending"] == 0
                assert client.get(lost_key(prefix)) is None
    finally:
        client.close()


async def test_a_wake_up_whose_worker_died_before_taking_a_run_is_handed_back(
    redis_process: RedisProcess,
) -> None:
    """A worker that read a wake-up and died before it admitted a run leaves the entry
    pending: a reaper claims it once idle past the lease, finds no run holding it, and wakes a
    worker for the user's waiting run, which executes."""
    prefix = unique_prefix()
    client = redis_process.client()
    url = redis_process.url
    work = f"{prefix}queue:work"
    try:
        async with api(url, prefix) as a, api(url, prefix) as executor:
            client.xgroup_create(work, "workers", id="0", mkstream=True)
            run_id = await submit(a, "ann", 0)
            taken = client.xreadgroup("workers", "ghost", {work: ">"}, count=10)
            assert taken and len(taken[0][1]) == 1  # the wake-up, read and never acked
            worker = Worker(executor, 1)
            task = asyncio.create_task(worker.run())
            try:
                done = await until(ended(client, prefix, "ann", run_id), "the run")
                assert done["status"] == "succeeded"
            finally:
                worker.stop()
                await task
                await worker.drain()
            assert client.xpending(work, "workers")["pending"] == 0
            assert client.get(lost_key(prefix)) is None  # no run was lost
    finally:
        client.close()
