"""Checks on the JSON a client sends, made at the door before anything is started.

Every request body and WebSocket frame goes through ``load_json``: ``parse_json`` (total: any
bytes give a value or an ``ApiError``, never another exception), then ``check_json``, which
walks the value once to refuse what would poison everything it reaches later: nesting deeper
than the limit, and strings that are not valid Unicode (a lone UTF-16 surrogate such as
``"\\ud800"``, which JSON escapes can produce but no UTF-8 encoder can write). The same walk
measures each top-level member's size as compact JSON, for the run input size limit.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from agentengine import AgentEngineError

from agentengine_server.errors import ApiError

__all__ = ["check_json", "load_json", "parse_json"]

#: Python refuses to convert integers longer than this many digits (CVE-2020-10735).
_INT_DIGITS = sys.get_int_max_str_digits() or 4300


def load_json(raw: bytes | str, *, what: str, max_depth: int) -> tuple[Any, dict[str, int]]:
    """``parse_json`` then ``check_json``: the value of ``raw`` and the sizes of its members."""
    value = parse_json(raw, what=what, max_depth=max_depth)
    return value, check_json(value, max_depth=max_depth)


def parse_json(raw: bytes | str, *, what: str, max_depth: int) -> Any:
    """The JSON value of ``raw`` (a request body or frame, named ``what`` in messages).

    Raises ``ApiError`` only: 400 ``invalid_json`` for what is not JSON (including an
    integer over Python's 4,300-digit limit), 422 ``nested_too_deep`` for nesting so deep the
    parser gives up (far past ``max_depth``; ``check_json`` catches the rest).
    """
    try:
        return json.loads(raw)
    except RecursionError:
        raise _too_deep(what, max_depth, None) from None
    except json.JSONDecodeError as exc:
        raise ApiError(400, "invalid_json", f"{what} is not valid JSON: {exc}") from None
    except UnicodeDecodeError:
        raise ApiError(
            400, "invalid_json", f"{what} is not valid JSON: it is not UTF-8 text"
        ) from None
    except ValueError as exc:
        if "digits" in str(exc):
            raise ApiError(
                400,
                "invalid_json",
                f"{what} holds an integer with more than {_INT_DIGITS} digits; "
                "send very large numbers as strings",
            ) from None
        raise ApiError(400, "invalid_json", f"{what} is not valid JSON: {exc}") from None


def check_json(value: Any, *, max_depth: int) -> dict[str, int]:
    """Check a parsed value; return the compact JSON size in bytes of each member when it is
    an object (empty otherwise).

    Objects and arrays may nest ``max_depth`` levels below the top-level value (the envelope
    of a body or frame), so a run's ``input`` object nests at most ``max_depth`` levels.
    Raises ``ApiError`` (422 ``nested_too_deep`` or ``invalid_unicode``, with ``path``).
    """
    sizes: dict[str, int] = {}
    try:
        if isinstance(value, dict):
            for key, member in value.items():
                try:
                    _check_string(key)
                except _WalkError as problem:
                    problem.kind = "key"
                    raise
                try:
                    sizes[key] = _size(member, 1, max_depth)
                except _WalkError as problem:
                    problem.path.append(key)
                    raise
        else:
            _size(value, 0, max_depth)
    except _WalkError as problem:
        path = _format_path(list(reversed(problem.path)))
        if problem.kind == "depth":
            raise _too_deep(f"'{path}'" if path else "the value", max_depth, path) from None
        where = f"a key of {path or 'the top-level object'}" if problem.kind == "key" else path
        raise ApiError(
            422,
            "invalid_unicode",
            f"{where or 'the value'}: the string holds a lone UTF-16 surrogate "
            f"({problem.detail}); strings must be valid Unicode (surrogates only in pairs)",
            path=path,
        ) from None
    return sizes


class _WalkError(AgentEngineError):
    """Raised from deep inside the walk; each level adds its key as the stack unwinds (so the
    happy path builds no paths at all)."""

    def __init__(self, kind: str, path: Sequence[str | int], detail: str = "") -> None:
        super().__init__(kind)
        self.kind = kind
        self.path = list(path)
        self.detail = detail


def _too_deep(where: str, max_depth: int, path: str | None) -> ApiError:
    extra: dict[str, Any] = {"limit": max_depth}
    if path is not None:
        extra["path"] = path
    return ApiError(
        422,
        "nested_too_deep",
        f"{where} nests objects and arrays deeper than {max_depth} levels (the limit is "
        f"{max_depth}); send flatter data",
        **extra,
    )


def _check_string(text: str) -> int:
    """UTF-8 size of ``text``; ``_WalkError`` for a lone surrogate."""
    if text.isascii():
        return len(text)
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise _WalkError(
            "unicode", (), f"\\u{ord(text[exc.start]):04x} at character {exc.start}"
        ) from None


def _size(value: Any, depth: int, max_depth: int) -> int:
    """Compact JSON size of ``value`` nested ``depth`` levels deep (escapes not counted)."""
    if isinstance(value, str):
        return _check_string(value) + 2
    if isinstance(value, dict):
        if depth > max_depth:
            raise _WalkError("depth", ())
        total = 1 + len(value)  # braces, colons and commas
        for key, member in value.items():
            try:
                total += _check_string(key) + 2
            except _WalkError as problem:
                problem.kind = "key"
                raise
            try:
                total += _size(member, depth + 1, max_depth)
            except _WalkError as problem:
                problem.path.append(key)
                raise
        return total
    if isinstance(value, list):
        if depth > max_depth:
            raise _WalkError("depth", ())
        total = 1 + max(1, len(value))
        for index, member in enumerate(value):
            try:
                total += _size(member, depth + 1, max_depth)
            except _WalkError as problem:
                problem.path.append(index)
                raise
        return total
    if value is None or isinstance(value, bool):
        return 5
    if isinstance(value, int):
        return len(str(value))
    return len(repr(value))


_PATH_SHOWN = 8


def _format_path(parts: list[str | int]) -> str:
    """``input.a[0]["odd key"]``; a very long path keeps its start and its end."""
    if len(parts) > 2 * _PATH_SHOWN:
        parts = [*parts[:_PATH_SHOWN], "…", *parts[-_PATH_SHOWN:]]
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "…":
            out += ".…"
        elif part.isidentifier():
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out
