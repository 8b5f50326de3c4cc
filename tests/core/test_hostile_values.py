"""An agent or tool producing a value JSON cannot hold as such (a lone surrogate, bytes that are
not UTF-8, a reference cycle, tuple keys, nesting 300 deep, an object whose str() raises, an
integer too long to write) still makes a stream that a subscriber reads to the terminal event,
every event serialising as a transport sends it, with a visible marker where the value was
replaced."""

from __future__ import annotations

import json
from typing import Any

import pytest
from agentengine import (
    BaseEvent,
    ExecutionEngineFactory,
    RunContext,
    UserExecutionContext,
    agent,
    hookimpl,
    parse_event,
    tool,
)
from hostile_values import Unprintable, cycle, deep

MARKER = "$marker"


#: name -> a value an agent or tool may produce
HOSTILE: dict[str, Any] = {
    "lone_surrogate": "a\ud800b",
    "bytes_not_utf8": b"\xff\xfe\x00",
    "cycle": cycle(),
    "tuple_keys": {(1, 2): "x", "1,2": "y"},  # two keys JSON would write alike
    "deep_300": deep(300),
    "str_raises": [Unprintable()],
    "huge_int": 10**5000,
}


#: name -> what the wire form of that value must show
SHOWS: dict[str, tuple[str, ...]] = {
    "lone_surrogate": ("a\ufffdb",),
    "bytes_not_utf8": (MARKER, '"bytes"', '"base64"'),
    "cycle": (MARKER, '"cycle"', '"loop"'),
    "tuple_keys": ('"x"', '"y"'),  # both values, under distinct keys
    "deep_300": (MARKER, '"depth"'),
    "str_raises": (MARKER, '"unrepresentable"', "Unprintable"),
    "huge_int": (MARKER, '"int"', '"digits"'),
}


def wire_ok(event: BaseEvent) -> dict[str, Any]:
    """Everything a transport does with an event, checked: it must never fail."""
    data = event.to_wire()
    text = json.dumps(data, ensure_ascii=False)
    text.encode("utf-8")  # what a WebSocket or SSE transport sends
    event.model_dump_json().encode("utf-8")
    assert parse_event(text).to_wire() == data
    return data


class UnprintableError(Exception):
    """An exception whose message cannot be written."""

    def __str__(self) -> str:
        raise ValueError("no message either")


@tool
async def hostile_tool(kind: str, echo: Any = None) -> Any:
    """Return the hostile value named ``kind``."""
    return HOSTILE[kind]


@agent(name="hostile")
async def hostile_agent(run: RunContext, kind: str, extra: Any = None) -> Any:
    value = HOSTILE[kind]
    await run.think(value)  # the agent passes whatever it has
    await run.call_tool("hostile_tool", {"kind": kind, "echo": value})
    return value


@agent(name="unprintable_error")
async def unprintable_error(run: RunContext) -> Any:
    raise UnprintableError


class HostilePlugin:
    name = "hostile-values"

    @hookimpl
    def agentengine_register_agents(self, registry: Any) -> None:
        registry.add(hostile_agent)
        registry.add(unprintable_error)

    @hookimpl
    def agentengine_register_tools(self, registry: Any) -> None:
        registry.add(hostile_tool)


@pytest.mark.parametrize("kind", sorted(HOSTILE))
async def test_a_run_producing_a_hostile_value_streams_to_its_terminal_event(kind: str) -> None:
    factory = ExecutionEngineFactory(plugins=[HostilePlugin()], load_entrypoints=False)
    async with factory:
        async with factory.user_execution_engine(UserExecutionContext.for_user("alice")) as eng:
            handle = await eng.start_run("hostile", {"kind": kind, "extra": HOSTILE[kind]})
            result = await handle.result()
        frames = []
        async for item in factory.events.subscribe("alice"):
            frames.append(wire_ok(item))  # type: ignore[arg-type]
            if item.type == "agent_completed":
                break
    types = [f["type"] for f in frames]
    assert types[0] == "agent_started" and types[-1] == "agent_completed"
    assert "tool_completed" in types
    done = frames[-1]
    assert done["status"] == "succeeded", done
    assert result.output is HOSTILE[kind]  # in process: the agent's own object
    marked = {"tool_executing": "args", "tool_completed": "result", "agent_completed": "output"}
    for frame in frames:  # the value where the agent or tool put it, with its marker
        if frame["type"] in marked:
            shown = json.dumps(frame[marked[frame["type"]]], ensure_ascii=False)
            assert all(part in shown for part in SHOWS[kind]), shown
    assert frames[0]["input"]["kind"] == kind


async def test_an_exception_whose_message_cannot_be_written_still_ends_the_run() -> None:
    factory = ExecutionEngineFactory(plugins=[HostilePlugin()], load_entrypoints=False)
    async with factory:
        async with factory.user_execution_engine(UserExecutionContext.for_user("bob")) as eng:
            result = await eng.execute_agent("unprintable_error")
        frames = [wire_ok(e) for e in result.events]
    assert result.status == "failed"
    assert frames[-1]["type"] == "agent_completed" and frames[-1]["status"] == "failed"
    assert "UnprintableError" in frames[-1]["error"]
