"""Generated run ids: unique and unguessable, across threads and forks."""

from __future__ import annotations

import os
import re
import sys
import threading

import pytest
from agentengine.ids import random_hex


def test_ids_are_96_random_bits_in_hex_and_never_repeat_across_threads() -> None:
    drawn: list[list[str]] = [[] for _ in range(4)]

    def draw(into: list[str]) -> None:
        into.extend(random_hex() for _ in range(5000))

    threads = [threading.Thread(target=draw, args=(into,)) for into in drawn]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [i for into in drawn for i in into]
    assert len(set(everything)) == len(everything) == 20_000
    assert all(re.fullmatch(r"[0-9a-f]{24}", i) for i in everything)


@pytest.mark.skipif(sys.platform == "win32", reason="os.fork is POSIX only")
def test_a_forked_child_does_not_reuse_its_parents_buffered_ids() -> None:
    random_hex()  # the buffer now holds ids the parent will hand out next
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next id, then leave at once
        os.write(write_end, random_hex().encode())
        os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    child_id = os.read(read_end, 100).decode()
    os.close(read_end)
    parent_ids = {random_hex() for _ in range(300)}
    assert re.fullmatch(r"[0-9a-f]{24}", child_id)
    assert child_id not in parent_ids


async def test_every_generated_id_follows_the_one_scheme() -> None:
    from agentengine import ExecutionEngineFactory, Settings, UserExecutionContext, agent
    from agentengine.ids import new_id

    @agent
    async def noop(run: object) -> None:
        return None

    class One:
        name = "one"

        from agentengine import hookimpl

        @hookimpl
        def agentengine_register_agents(self, registry: object) -> None:
            registry.add(noop)  # type: ignore[attr-defined]

    ctx = UserExecutionContext.for_user("ids-user")
    assert re.fullmatch(r"thread-[0-9a-f]{24}", ctx.thread_id)
    assert re.fullmatch(r"req-[0-9a-f]{24}", ctx.request_id)
    assert re.fullmatch(r"x-[0-9a-f]{24}", new_id("x"))
    factory = ExecutionEngineFactory(
        plugins=[One()], load_entrypoints=False, config=Settings(), environ={}
    )
    try:
        async with factory.user_execution_engine(ctx) as engine:
            assert re.fullmatch(r"[0-9a-f]{24}", engine.engine_id)
            first = await engine.execute_agent("noop", {})
            second = await engine.execute_agent("noop", {})
    finally:
        await factory.shutdown()
    # The first run takes the context's run id; the engine makes the later ones.
    assert first.run_id == ctx.run_id
    assert re.fullmatch(r"run-[0-9a-f]{24}", ctx.run_id)
    assert re.fullmatch(r"run-[0-9a-f]{24}", second.run_id) and second.run_id != first.run_id
