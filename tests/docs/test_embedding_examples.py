"""The code examples of docs/embedding.md run here, in order, in one namespace, with
top-level ``await`` allowed (the conventions of ``test_doc_examples``), so the page cannot rot."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path
from typing import Any

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
_BLOCK = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks(page: str, language: str, section: str) -> list[str]:
    """The ``language`` blocks of one ``## section`` of ``page``."""
    text = (DOCS / page).read_text(encoding="utf-8")
    start = text.index(f"\n## {section}\n")
    end = text.find("\n## ", start + 1)
    text = text[start : end if end != -1 else None]
    return [body for lang, body in _BLOCK.findall(text) if lang == language]


async def execute(code: str, namespace: dict[str, Any], name: str) -> None:
    compiled = compile(code, name, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
    result = eval(compiled, namespace)
    if inspect.iscoroutine(result):
        await result


async def test_embedding_examples_run(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no stray agentengine.toml
    code = blocks("embedding.md", "python", "Runs that outlive the request")
    assert len(code) >= 2
    namespace: dict[str, Any] = {"__name__": "embedding_doc"}
    for number, body in enumerate(code, 1):
        await execute(body, namespace, f"embedding.md block {number}")
    # The example's factory was shut down by its lifespan, every run recorded as ended.
    factory = namespace["app"].state.factory
    assert factory.closed
    assert {r.status for r in await factory.runs.list("alice")} == {"succeeded", "cancelled"}
