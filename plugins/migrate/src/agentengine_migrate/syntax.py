"""Reading Python source the same way in the scanner and both rewriters.

Small rules each written once: which module a relative import names, which calls take a
``mock.patch``-style target or a module to import (and their replacement), which ``with``
blocks assert that an import fails, dotted names of ``ast`` nodes, and line numbers of byte
offsets (a lone CR ends a line, as for Python).
"""

from __future__ import annotations

import ast
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentengine_migrate.spec import MigrationSpec

__all__ = [
    "RAISES_CALLS",
    "absolute_module",
    "dotted_name",
    "is_import_call",
    "is_patch_call",
    "string_target_replacement",
    "is_raises_item",
    "line_of",
    "merge_conflict_line",
]

_PATCH_CALLS = frozenset(
    {"patch", "patch.dict", "patch.multiple", "monkeypatch.setattr", "monkeypatch.delattr"}
)
#: Calls whose ``with`` block asserts that something fails (imports there are left alone).
RAISES_CALLS = frozenset({"pytest.raises", "raises"})
_CONFLICT_RE = re.compile(
    rb"(?:^|(?<=\r))(?:<{7}(?: |\r|$)|={7}(?:\r|$)|>{7}(?: |\r|$)|\|{7}(?: |\r|$))", re.MULTILINE
)


def absolute_module(module: str | None, level: int, package: str | None) -> str | None:
    """The module ``from <"." * level><module> import ...`` names, written in ``package``.

    ``level`` 0 is an absolute import (``module`` as it is). None when a relative import
    cannot be resolved: the package is unknown, or the dots climb above its top level.
    """
    if not level:
        return module
    if package is None:
        return None
    parts = package.split(".")
    if level > len(parts):
        return None
    base = ".".join(parts[: len(parts) - (level - 1)])
    return f"{base}.{module}" if module else base


def dotted_name(node: ast.expr) -> str | None:
    """``a.b.c`` for a chain of names and attributes, else None."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def is_patch_call(name: str) -> bool:
    """Whether a call of ``name`` takes a ``mock.patch``-style dotted target first."""
    return name in _PATCH_CALLS or name.endswith((".patch", ".patch.dict", ".patch.multiple"))


_IMPORT_CALLS = frozenset({"import_module", "__import__", "find_spec"})


def is_import_call(name: str) -> bool:
    """Whether a call of ``name`` imports the module its first argument names."""
    return name.rpartition(".")[2] in _IMPORT_CALLS


def string_target_replacement(spec: MigrationSpec, call: str, value: str) -> str | None:
    """The new first argument of a patch or import call naming a deprecated path, or None.

    A patch target (``a.b.Name.attr``) follows its name; an import target must be a module
    with a replacement of its own (the module as a whole).
    """
    if is_patch_call(call):
        return spec.replace_dotted(value)
    if is_import_call(call):
        rule = spec.modules.get(value)
        return rule.replacement if rule is not None else None
    return None


def is_raises_item(item: ast.withitem) -> bool:
    """Whether a ``with`` item is ``pytest.raises(...)``."""
    expr = item.context_expr
    return isinstance(expr, ast.Call) and dotted_name(expr.func) in RAISES_CALLS


def line_of(data: bytes, offset: int) -> int:
    """The 1-based line of byte ``offset``; like Python, a lone CR also ends a line."""
    newlines = data.count(b"\n", 0, offset)
    if b"\r" in data:
        newlines += data.count(b"\r", 0, offset) - data.count(b"\r\n", 0, offset)
    return newlines + 1


def merge_conflict_line(data: bytes) -> int | None:
    """The line of the first merge-conflict marker, or None."""
    match = _CONFLICT_RE.search(data)
    return None if match is None else line_of(data, match.start())
