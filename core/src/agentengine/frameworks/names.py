"""Tool names as a model's function-calling API accepts them, and patterns in ``tools=``.

Model APIs accept function names matching ``^[A-Za-z0-9_-]{1,64}$``; agentengine tool names may
hold other characters (MCP tools are dotted: ``time.get_current_time``). ``model_tool_name``
maps a name to one the model accepts:

* a name that already fits is kept as it is;
* ``.`` becomes ``__`` (``time.get_current_time`` -> ``time__get_current_time``);
* any other character outside ``[A-Za-z0-9_-]`` becomes ``_x<hex code point>_``;
* a result longer than 64 characters is cut to 55 and ended with ``_`` and 8 hex digits of a
  hash of the original name.

Each run keeps the table both ways (``ToolNames``), so a model's call is always mapped back to
the exact agentengine name (the name in the run's tool events); two tools of one agent whose
names would map to the same model name are refused with both names.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from collections.abc import Iterable

__all__ = ["ToolNames", "is_per_user_pattern", "match_patterns", "model_tool_name"]

_FITS = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_MAX = 64


def model_tool_name(name: str) -> str:
    """The name the model sees for the agentengine tool ``name`` (see the module docs)."""
    if _FITS.match(name):
        return name
    out = []
    for ch in name:
        if ch == ".":
            out.append("__")
        elif ch.isascii() and (ch.isalnum() or ch in "_-"):
            out.append(ch)
        else:
            out.append(f"_x{ord(ch):x}_")
    mapped = "".join(out) or "tool"
    if len(mapped) > _MAX:
        digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        mapped = f"{mapped[:55]}_{digest}"
    return mapped


def is_per_user_pattern(pattern: str) -> bool:
    """Whether ``pattern`` may name per-user tools (MCP tools: ``<server>.<tool>``, dotted),
    which resolve only when a run starts; other names must match registered tools."""
    return "." in pattern


def match_patterns(patterns: Iterable[str], names: Iterable[str]) -> dict[str, list[str]]:
    """For each pattern (an exact name or an ``fnmatch`` glob), the names it matches."""
    known = sorted(set(names))
    return {p: [n for n in known if n == p or fnmatch.fnmatchcase(n, p)] for p in patterns}


class ToolNames:
    """The run's mapping between agentengine tool names and the names the model sees."""

    __slots__ = ("to_engine", "to_model")

    def __init__(self, engine_names: Iterable[str]) -> None:
        self.to_model: dict[str, str] = {}
        self.to_engine: dict[str, str] = {}
        for name in engine_names:
            mapped = model_tool_name(name)
            other = self.to_engine.get(mapped)
            if other is not None and other != name:
                raise ValueError(
                    f"agentengine tools {other!r} and {name!r} would both be called {mapped!r} "
                    "by the model; rename one of them or leave one out of tools="
                )
            self.to_model[name] = mapped
            self.to_engine[mapped] = name
