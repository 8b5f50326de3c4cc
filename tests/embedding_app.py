"""The application of docs/embedding.md, as files: its ``# file: NAME`` blocks joined by name,
in order (``app.py`` and ``test_app.py``). Used by the docs tests and by the test that serves
``app.py`` under a real uvicorn."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "embedding.md"
BLOCK = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
FILE_LINE = re.compile(r"# file: (\S+)")


def doc_text() -> str:
    """The page."""
    return DOC.read_text(encoding="utf-8")


def blocks(text: str, language: str) -> list[str]:
    """The bodies of ``text``'s fenced blocks of ``language``, in order."""
    return [body for lang, body in BLOCK.findall(text) if lang == language]


def doc_files() -> dict[str, str]:
    """The page's files: the ``# file: NAME`` python blocks joined by name, in order."""
    files: dict[str, str] = {}
    for body in blocks(doc_text(), "python"):
        first, _, rest = body.partition("\n")
        match = FILE_LINE.fullmatch(first.strip())
        if match:
            files[match.group(1)] = files.get(match.group(1), "") + rest + "\n\n"
    return files


def write_app(path: Path) -> dict[str, str]:
    """Write the page's files into ``path``; returns them by name."""
    files = doc_files()
    for name, content in files.items():
        (path / name).write_text(content, encoding="utf-8")
    return files
