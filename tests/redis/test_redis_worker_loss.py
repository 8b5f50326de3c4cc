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
import re
import signal
import subprocess
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agentengine import (
    ExecutionEngineFactory,
    UserExecutionContext,
    parse_event,
)
from agentengine_redis import RedisPlugin
from agentengine_redis.layout import lost_key, run_key_prefix, slots_key, stream_key
from redis_server import RedisProcess, unique_prefix
from server_helpers import (
    AGENTENGINE,
    SECRET,
    check_runs_end_once,
    serve_env,
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


def check_lost(events: list[dict[str, Any]], error_type: str = "WorkerLostError") -> None:
    """One run's events: whole (1..n, started first, one terminal last) and ending with the
    reaper's agent_error then agent_completed."""
    check_runs_end_once([{k: v for k, v in e.items() if k != "_attempt"} for e in events])
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
                check_runs_end_once(
                    [
                        {k: v for k, v in e.items() if k != "_attempt"}
                        for e in stored(client, prefix, "bob", bob)
                    ]
                )
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
                await asyncio.sleep(2.5)
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
                check_runs_end_once(
                    [{k: v for k, v in e.items() if k != "_attempt"} for e in events]
                )
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
