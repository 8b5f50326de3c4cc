"""The demo agents and tools (registered by ``agentengine.cli.demo_plugin.DemoPlugin``)."""

from __future__ import annotations

import asyncio
import hashlib

from agentengine.definitions.agents import agent
from agentengine.definitions.run import RunContext
from agentengine.definitions.tools import tool

__all__ = ["echo", "researcher", "search_notes", "word_count"]

_NOTES = {
    "isolation": "Each user's engine only ever sees that user's context and events.",
    "plugins": "Every engine variant is a plugin layered onto one UserExecutionEngine.",
    "cursors": "A subscriber that reconnects resumes after the last cursor it saw.",
}


@tool(timeout=5.0)
async def search_notes(query: str, limit: int = 2) -> list[str]:
    """Search the built-in notes for a word; returns the matching notes."""
    await asyncio.sleep(0.005)  # a stand-in for I/O
    words = query.lower().split()
    hits = [
        text for key, text in _NOTES.items() if any(w in key or w in text.lower() for w in words)
    ]
    return hits[:limit] or [f"no note mentions {query!r}"]


@tool(timeout=2.0)
async def word_count(text: str) -> int:
    """Count the words of a text."""
    return len(text.split())


@agent(name="researcher")
async def researcher(run: RunContext, question: str) -> str:
    """Look a question up in the notes and answer with what was found."""
    await run.think(f"looking up: {question}")
    notes = await run.call_tool("search_notes", {"query": question})
    words = await run.call_tool("word_count", {"text": " ".join(notes)})
    await run.think(f"found {len(notes)} note(s), {words} words")
    digest = hashlib.sha256(f"{run.user_id}:{question}".encode()).hexdigest()[:8]
    return f"{notes[0]} [answer {digest} for {run.user_id}]"


@agent(name="echo")
async def echo(run: RunContext, text: str) -> str:
    """Repeat the input text."""
    await run.think("echoing")
    return text
