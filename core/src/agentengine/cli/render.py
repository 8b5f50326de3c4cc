"""How the command line shows an event: one readable line per event."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentengine.events import BaseEvent

__all__ = ["event_line"]


def event_line(event: BaseEvent) -> str:
    """``[user] #seq type detail``: the event's essentials on one line."""
    data = event.to_wire()
    kind = data["type"]
    if kind == "agent_started":
        detail = json.dumps(data["input"])
    elif kind == "agent_thinking":
        detail = ("(reasoning) " if data.get("reasoning") else "") + data["text"]
    elif kind == "tool_executing":
        detail = f"{data['tool']}({json.dumps(data['args'])})"
    elif kind == "tool_completed":
        shown = data["result"] if data["status"] == "ok" else data["error"]
        detail = f"{data['tool']} -> {data['status']}: {json.dumps(shown)[:120]}"
    elif kind == "agent_error":
        detail = f"{data['error_type']}: {data['error']}"
    else:
        shown = data["output"] if data["status"] == "succeeded" else data["error"]
        detail = f"{data['status']}: {json.dumps(shown)[:200]}"
    return f"[{data['user_id']}] #{data['seq']:<2} {kind:<15} {detail}"
