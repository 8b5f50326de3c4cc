"""How the command line shows an event: one readable line per event."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentengine.events import BaseEvent

__all__ = ["event_line"]


def _json(value: object) -> str:
    # Text is shown as written (``19 °C``, not ``19 \\u00b0C``): the line is for people.
    return json.dumps(value, ensure_ascii=False)


def event_line(event: BaseEvent) -> str:
    """``[user] #seq type detail``: the event's essentials on one line."""
    data = event.to_wire()
    kind = data["type"]
    if kind == "agent_started":
        detail = _json(data["input"])
    elif kind == "agent_thinking":
        detail = ("(reasoning) " if data.get("reasoning") else "") + data["text"]
    elif kind == "tool_executing":
        detail = f"{data['tool']}({_json(data['args'])})"
    elif kind == "tool_completed":
        shown = data["result"] if data["status"] == "ok" else data["error"]
        detail = f"{data['tool']} -> {data['status']}: {_json(shown)[:120]}"
    elif kind == "agent_error":
        # ``error`` usually starts with its type already ("ToolError: ..."): say it once.
        error, error_type = str(data["error"]), str(data["error_type"])
        named = error == error_type or error.startswith(f"{error_type}: ")
        detail = error if named else f"{error_type}: {error}"
    else:
        shown = data["output"] if data["status"] == "succeeded" else data["error"]
        detail = f"{data['status']}: {_json(shown)[:200]}"
    return f"[{data['user_id']}] #{data['seq']:<2} {kind:<15} {detail}"
