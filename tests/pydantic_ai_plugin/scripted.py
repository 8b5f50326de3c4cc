"""A scripted model for the pydantic-ai adapter's tests: each test knows every event to expect.

``scripted(turn1, turn2, ...)``: model request ``n`` streams ``turn n`` (the last turn repeats).
A turn is a list of steps: ``"text"`` (streamed text), ``Think("...")`` (reasoning),
``Call(name, args, id)`` (a tool call), ``Raise(exc)``, ``Wait(event)`` (blocks on an
``asyncio.Event``). ``requests`` records what the model was sent each time.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from pydantic_ai.messages import ModelMessage
from pydantic_ai.models.function import AgentInfo, DeltaThinkingPart, DeltaToolCall, FunctionModel


@dataclass
class Call:
    name: str
    args: dict[str, Any] | str
    id: str


@dataclass
class Think:
    text: str


@dataclass
class Raise:
    exc: BaseException


@dataclass
class Wait:
    event: asyncio.Event
    reached: asyncio.Event = field(default_factory=asyncio.Event)


class Script:
    """The model's turns and what it was sent."""

    def __init__(self, *turns: list[Any]) -> None:
        self.turns = turns
        self.requests: list[list[ModelMessage]] = []
        self.infos: list[AgentInfo] = []

    async def stream(self, messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[Any]:
        self.requests.append(list(messages))
        self.infos.append(info)
        turn = self.turns[min(len(self.requests), len(self.turns)) - 1]
        for index, step in enumerate(turn):
            if isinstance(step, str):
                yield step
            elif isinstance(step, Think):
                yield {100: DeltaThinkingPart(content=step.text)}
            elif isinstance(step, Call):
                args = step.args if isinstance(step.args, str) else json.dumps(step.args)
                yield {index: DeltaToolCall(name=step.name, json_args=args, tool_call_id=step.id)}
            elif isinstance(step, Raise):
                raise step.exc
            elif isinstance(step, Wait):
                step.reached.set()
                await step.event.wait()

    def model(self) -> FunctionModel:
        return FunctionModel(stream_function=self.stream)

    def tool_names(self, request: int = 0) -> list[str]:
        """The function tools the model was offered at request ``request``."""
        return sorted(t.name for t in self.infos[request].function_tools)

    def sent_text(self, request: int) -> str:
        """Everything request ``request`` sent to the model, as text (to look for a result)."""
        return repr(self.requests[request])


def scripted(*turns: list[Any]) -> Script:
    return Script(*turns)
