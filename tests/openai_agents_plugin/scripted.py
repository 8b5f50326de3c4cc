"""A scripted model for the openai-agents adapter's tests, on the SDK's own ``ScriptedModel``.

``scripted(turn1, turn2, ...)``: model call ``n`` answers ``turn n``. A turn is a list of output
items (``text``, ``think``, ``call``), an exception (the model call raises it), or a ``Pieces``
(text streamed in several deltas, optionally stopping at a ``gate`` until it is set).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from agents.testing import ModelCall, ModelStep, ScriptedModel, assistant_message, function_call
from agents.testing.model import _stream_events_for_step
from openai.types.responses.response_reasoning_item import ResponseReasoningItem, Summary


def text(content: str) -> Any:
    return assistant_message(content)


def think(content: str, item_id: str = "r1") -> Any:
    return ResponseReasoningItem(
        id=item_id, type="reasoning", summary=[Summary(text=content, type="summary_text")]
    )


def call(name: str, args: dict[str, Any] | str, call_id: str) -> Any:
    return function_call(name, args, call_id=call_id)


@dataclass
class Pieces:
    """Text the model streams in several deltas; with ``gate``, it stops after the first
    delta until the gate is set (``reached`` is set then)."""

    pieces: tuple[str, ...]
    gate: asyncio.Event | None = None
    reached: asyncio.Event = field(default_factory=asyncio.Event)

    def step(self) -> ModelStep:
        full = assistant_message("".join(self.pieces))
        events = _stream_events_for_step(ModelStep(output=[full]), preserve_raw_usage=False)

        async def stream(_call: ModelCall) -> AsyncIterator[Any]:
            for event in events:
                if event.type != "response.output_text.delta":
                    yield event
                    continue
                for index, piece in enumerate(self.pieces):
                    yield event.model_copy(update={"delta": piece})
                    if index == 0 and self.gate is not None:
                        self.reached.set()
                        await self.gate.wait()

        return ModelStep.stream(stream, output=[full])


def scripted(*turns: Any) -> ScriptedModel:
    return ScriptedModel(
        [
            t.step()
            if isinstance(t, Pieces)
            else t
            if isinstance(t, Exception | ModelStep)
            else list(t)
            for t in turns
        ]
    )


def tool_names(model: ScriptedModel, request: int = 0) -> list[str]:
    """The tools the model was offered at call ``request``."""
    return sorted(t.name for t in model.calls[request].tools)


def sent_text(model: ScriptedModel, request: int) -> str:
    """Everything call ``request`` sent to the model, as text (to look for a result)."""
    return repr(model.calls[request].input)
