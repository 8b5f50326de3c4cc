"""The input and output of a framework agent run as an agentengine agent.

Input: ``message`` (the user's message) and optionally ``history``, earlier messages of the
conversation, oldest first (``ChatMessage``: ``{"role": "user" | "assistant", "content":
str}``); each adapter turns them into its framework's message history. Output: the
framework's final output as JSON data (``json_output``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel
from pydantic_core import to_jsonable_python

__all__ = ["ChatMessage", "json_output"]


class ChatMessage(BaseModel):
    """One earlier message of the conversation (the ``history`` input field)."""

    role: Literal["user", "assistant"]
    content: str


def json_output(value: Any) -> Any:
    """The framework's output as JSON data (pydantic models dumped in JSON mode; what is not
    JSON-able shown by its ``repr``)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return to_jsonable_python(value, fallback=repr)
