"""``factory.timings``: the engines report each finished run and tool call to listeners."""

from __future__ import annotations

import asyncio
from typing import Any

from agentengine import RunTimings, UserExecutionContext

from tests.core.test_tracing import factory


class Recorder:
    def __init__(self) -> None:
        self.runs: list[tuple[str, str]] = []
        self.tools: list[tuple[str, str]] = []

    def run_finished(self, agent: str, status: str, seconds: float) -> None:
        assert seconds >= 0
        self.runs.append((agent, status))

    def tool_finished(self, tool: str, status: str, seconds: float) -> None:
        assert seconds >= 0
        self.tools.append((tool, status))


def test_listeners_are_fanned_out_and_removed() -> None:
    timings = RunTimings()
    assert timings.run_finished is None and timings.tool_finished is None
    seen: list[Any] = []

    class OnlyRuns:
        def run_finished(self, *args: Any) -> None:
            seen.append(("a", *args))

    class Both(OnlyRuns):
        def tool_finished(self, *args: Any) -> None:
            seen.append(("t", *args))

    remove_one = timings.add_listener(OnlyRuns())
    remove_two = timings.add_listener(Both())
    assert timings.listening
    assert timings.run_finished is not None
    timings.run_finished("x", "succeeded", 1.0)
    assert timings.tool_finished is not None
    timings.tool_finished("t", "ok", 0.5)
    assert seen == [("a", "x", "succeeded", 1.0)] * 2 + [("t", "t", "ok", 0.5)]
    remove_one()
    remove_two()
    remove_two()  # twice: nothing more
    assert timings.run_finished is None and timings.tool_finished is None
    assert timings.first_event is None and timings.queue_wait is None
    assert not timings.listening


async def test_every_run_and_tool_call_is_reported_with_its_status() -> None:
    recorder = Recorder()
    async with factory() as f:
        remove = f.timings.add_listener(recorder)
        ctx = UserExecutionContext.for_user("user-timings")
        async with f.user_execution_engine(ctx) as e:
            await e.execute_agent("twotools", {"n": 1})
            await e.execute_agent("failing", {"swallow": False})
            await e.execute_agent("sleepy", {"seconds": 30}, timeout=0.1)
            handle = await e.start_run("sleepy", {"seconds": 30})
            for _ in range(200):
                if any(ev.type == "tool_executing" for ev in handle._run.events):
                    break
                await asyncio.sleep(0.01)
            await handle.cancel()
            remove()
            await e.execute_agent("twotools", {"n": 1})  # no longer reported
    assert recorder.runs == [
        ("twotools", "succeeded"),
        ("failing", "failed"),
        ("sleepy", "timed_out"),
        ("sleepy", "cancelled"),
    ]
    assert recorder.tools == [
        ("add", "ok"),
        ("add", "ok"),
        ("explode", "error"),
        ("slow", "cancelled"),
        ("slow", "cancelled"),
    ]


async def test_a_raising_listener_never_fails_the_run() -> None:
    class Broken:
        def run_finished(self, *args: Any) -> None:
            raise RuntimeError("metrics bug")

        def tool_finished(self, *args: Any) -> None:
            raise RuntimeError("metrics bug")

    recorder = Recorder()
    async with factory() as f:
        f.timings.add_listener(Broken())
        f.timings.add_listener(recorder)  # still called after the broken one
        async with f.user_execution_engine(UserExecutionContext.for_user("user-timings")) as e:
            result = await e.execute_agent("twotools", {"n": 1})
    assert result.status == "succeeded"
    assert [ev.type for ev in result.events][-2:] == ["tool_completed", "agent_completed"]
    assert recorder.runs == [("twotools", "succeeded")]
    assert len(recorder.tools) == 2
