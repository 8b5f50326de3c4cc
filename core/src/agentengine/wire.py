"""Wire-safe event values: whatever an agent or tool produces, made JSON-safe and bounded once.

An event carries values that user code produced: a run's ``input``, a tool's ``args`` and
``result``, an agent's ``output``, ``think`` text, error messages. The engine passes each of them
through ``wire_value`` (or ``wire_text`` for a field that must be a string) when it builds the
event, so every sink, transport and observer gets the same value, one that ``json.dumps``,
``model_dump_json`` and UTF-8 encoding never refuse, no larger than the event size limit.

A value that is already JSON-safe and small comes back as the same object (the fast path: one
type-dispatched walk, no copy). Anything else is converted, with a visible marker wherever
something was replaced (see docs/events.md, "Wire-safe values"):

* a string holding lone surrogates: each becomes U+FFFD (a valid surrogate pair becomes the
  character it encodes);
* a string over the size limit: its head, then ``…[truncated: N characters]``;
* ``bytes``: the text when they are UTF-8, else ``{"$marker": "bytes", "size": N, "base64": ...}``;
* a tuple, set or other sequence: a list; a mapping with keys that are not strings: string keys
  (``1`` -> ``"1"``, other keys by ``repr``), made unique with a ``#2``, ``#3`` suffix;
* a container that contains itself: ``{"$marker": "cycle", "type": T}``;
* nesting deeper than ``MAX_DEPTH``: ``{"$marker": "depth", "type": T, "size": N}``;
* a list over the size limit: the items that fit, then ``{"$marker": "truncated", "type": T,
  "size": N}``; a mapping: the items that fit, with ``"$marker": "truncated", "$size": N``;
* an integer of more than 4,000 digits: ``{"$marker": "int", "digits": N}``;
* another object: what pydantic's JSON mode makes of it (models, dataclasses, dates, enums, UUIDs,
  decimals), else its ``str()``, else ``{"$marker": "unrepresentable", "type": T, "error": E}``.

``nan`` and the infinities stay floats, as before (``NaN``/``Infinity`` in JSON).

Sizes are estimates of the value's JSON text in bytes (ASCII one byte a character, other
characters three), computed by the same walk: no ``json.dumps`` per event.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from typing import Any

from pydantic_core import to_jsonable_python

from agentengine.errors import describe_error

__all__ = [
    "DEFAULT_MAX_EVENT_BYTES",
    "MARKER",
    "MAX_DEPTH",
    "SIZE",
    "flat_dict_size",
    "wire_outcome",
    "wire_safe",
    "wire_text",
    "wire_value",
]

#: Containers nested deeper than this are replaced by a ``depth`` marker. JSON parsers refuse
#: deep documents (pydantic's at 200 levels, Python's ``json`` near 1,000): 64 leaves room for the
#: event around the value and for any client.
MAX_DEPTH = 64
#: The default limit of one event's values, in estimated JSON bytes (``[engine] event_max_bytes``).
DEFAULT_MAX_EVENT_BYTES = 256 * 1024
#: The key that marks a replaced value: ``{"$marker": kind, ...}``.
MARKER = "$marker"
#: The key of a cut mapping's original number of items (beside ``"$marker": "truncated"``).
SIZE = "$size"

# Integers beyond this are not written by json.dumps (Python's 4,300-digit conversion limit).
BIG_INT = 10**4000
NEG_BIG_INT = -BIG_INT
_SURROGATES = re.compile("[\ud800-\udfff]")
_TRUNCATED = "…[truncated: {} characters]"
# A marker's own estimated size, counted against the budget.
_MARKER_COST = 64
# What a string cut to fit leaves for the values after it.
_RESERVE = 4096
# Cost of a character that is not ASCII, in the estimate (UTF-8 takes 2 to 4 bytes).
_WIDE = 3


def _measure(value: Any, depth: int, limit: int) -> int:
    """The estimated JSON size of ``value`` when it is already wire-safe and at most ``limit``;
    -1 when it needs converting (or is larger). Allocates nothing: the fast path, with the
    scalar checks written out in the loops (a call per item would cost more than the check)."""
    t = type(value)
    if t is str:
        if value.isascii():
            return len(value) + 2
        if _SURROGATES.search(value) is not None:
            return -1
        return _WIDE * len(value) + 2
    if t is int:
        return 8 if NEG_BIG_INT < value < BIG_INT else -1
    if t is float or t is bool or value is None:
        return 8
    if t is dict:
        if depth > MAX_DEPTH:
            return -1
        depth += 1
        size = 2
        for key, item in value.items():
            if type(key) is not str:
                return -1
            if key.isascii():
                size += len(key) + 12
            elif _SURROGATES.search(key) is None:
                size += _WIDE * len(key) + 12
            else:
                return -1
            t = type(item)
            if t is str and item.isascii():
                size += len(item)
            elif t is int:
                if not NEG_BIG_INT < item < BIG_INT:
                    return -1
            elif not (t is float or t is bool or item is None):
                n = _measure(item, depth, limit)
                if n < 0:
                    return -1
                size += n
            if size > limit:
                return -1
        return size
    if t is list:
        if depth > MAX_DEPTH:
            return -1
        depth += 1
        size = 2
        for item in value:
            t = type(item)
            if t is str and item.isascii():
                size += len(item) + 10
            elif t is int:
                if not NEG_BIG_INT < item < BIG_INT:
                    return -1
                size += 9
            elif t is float or t is bool or item is None:
                size += 9
            else:
                n = _measure(item, depth, limit)
                if n < 0:
                    return -1
                size += n + 1
            if size > limit:
                return -1
        return size
    return -1


def wire_value(value: Any, limit: int = DEFAULT_MAX_EVENT_BYTES) -> tuple[Any, int]:
    """``value`` made wire-safe within about ``limit`` bytes, and its estimated JSON size.

    Returns ``value`` itself when it already is (JSON types only, valid Unicode, within
    ``MAX_DEPTH`` and ``limit``); otherwise a converted copy with markers (see the module docs).
    Never raises for any value (a ``str()`` or ``__iter__`` that raises becomes a marker).
    """
    # The commonest values first: a small dict of scalars (a run's input, a tool's arguments),
    # an int, a short ASCII string, None.
    t = type(value)
    if t is dict:
        size = flat_dict_size(value, limit)
        if size >= 0:
            return value, size
    elif t is int:
        if NEG_BIG_INT < value < BIG_INT:
            return value, 8
    elif t is str:
        if value.isascii() and len(value) < limit:
            return value, len(value) + 2
    elif value is None:
        return None, 4
    size = _measure(value, 0, limit)
    if size >= 0:
        return value, size
    conv = _Converter(limit)
    out = conv.convert(value, 0)
    return out, conv.used


def flat_dict_size(value: dict[Any, Any], limit: int = DEFAULT_MAX_EVENT_BYTES) -> int:
    """The estimated JSON size of a dict that ``wire_value`` returns as it is because it holds
    only ASCII string keys and JSON scalars (None, bools, ints, floats, ASCII strings) within
    ``limit``; -1 for any other dict. The commonest run input and tool arguments: this spares
    ``wire_value``'s dispatch and result tuple where the engine checks them."""
    # Keys iterated and values looked up: cheaper than items() for a few items.
    size = 2
    for key in value:  # noqa: PLC0206 - see above
        if type(key) is not str or not key.isascii():
            return -1
        item = value[key]
        t = type(item)
        if t is int:
            if not NEG_BIG_INT < item < BIG_INT:
                return -1
            size += len(key) + 12
        elif t is str and item.isascii():
            size += len(key) + len(item) + 6
        elif t is float or t is bool or item is None:
            size += len(key) + 12
        else:
            return -1
    return size if size <= limit else -1


def wire_outcome(
    value: Any, error: str | None, limit: int = DEFAULT_MAX_EVENT_BYTES
) -> tuple[Any, str | None, int]:
    """A tool call's or a run's outcome made wire-safe together: ``(value, error, size)``,
    the error first and the value in the room it leaves, so that both fit in ``limit``.
    The commonest values (None, a small int) are checked first, as ``wire_value``'s fast path
    does: it runs once per tool call and per run."""
    if error is None:
        if value is None:
            return None, None, 4
        if type(value) is int and NEG_BIG_INT < value < BIG_INT:
            return value, None, 8
        value, size = wire_value(value, limit)
        return value, None, size
    error, size = wire_text(error, limit)
    value, n = wire_value(value, limit - size)
    return value, error, size + n


def wire_text(value: Any, limit: int = DEFAULT_MAX_EVENT_BYTES) -> tuple[str, int]:
    """Like ``wire_value`` for a field that must be a string: ``str(value)`` when it is not one
    (a marker text naming the type when ``str()`` raises), made valid Unicode and cut to about
    ``limit`` bytes."""
    if type(value) is str and value.isascii() and len(value) + 2 <= limit:
        return value, len(value) + 2
    conv = _Converter(limit)
    out = conv.text(_safe_str(value), alone=True)
    return out, conv.used


def wire_safe(value: Any, limit: int = DEFAULT_MAX_EVENT_BYTES) -> Any:
    """``wire_value`` without the size: the wire-safe form of ``value``."""
    return wire_value(value, limit)[0]


def _safe_str(value: Any) -> str:
    if isinstance(value, str):
        return str.__str__(value)
    try:
        return str(value)
    except Exception as exc:  # a __str__ that raises is user code: never let it escape
        return f"<unrepresentable {_type_name(value)}: str() raised {_type_name(exc)}>"


def _type_name(value: Any) -> str:
    return _clean(type(value).__name__)


def _clean(text: str) -> str:
    """``text`` as valid Unicode: pairs of surrogates joined, lone ones replaced by U+FFFD."""
    if text.isascii() or _SURROGATES.search(text) is None:
        return text
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _cost(text: str) -> int:
    return len(text) + 2 if text.isascii() else _WIDE * len(text) + 2


class _Converter:
    """The slow path: builds the wire-safe copy, spending a byte budget as it goes."""

    __slots__ = ("budget", "limit", "path")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.budget = limit
        self.path: set[int] = set()  # ids of the containers being converted (cycle detection)

    @property
    def used(self) -> int:
        return self.limit - self.budget

    def text(self, text: str, alone: bool = False) -> str:
        """``text`` made valid, and cut to the budget. Unless it is ``alone`` (a whole field),
        a cut string leaves part of the budget for the values after it: one large string among
        small values cuts only the string."""
        text = _clean(text)
        cost = _cost(text)
        if cost <= self.budget:
            self.budget -= cost
            return text
        per_char = 1 if text.isascii() else _WIDE
        suffix = _TRUNCATED.format(len(text))
        room = self.budget - 2 - _cost(suffix)
        if not alone:
            room -= min(self.budget // 2, _RESERVE)
        keep = max(room, 0) // per_char
        self.budget -= keep * per_char + 2 + _cost(suffix)
        return text[:keep] + suffix

    def marker(self, kind: str, **details: Any) -> dict[str, Any]:
        self.budget -= _MARKER_COST
        return {MARKER: kind, **details}

    def convert(self, value: Any, depth: int) -> Any:
        t = type(value)
        if t is str:
            return self.text(value)
        if t is bool or value is None or t is float:
            self.budget -= 8
            return value
        if t is int:
            return self.integer(value)
        if t is dict or t is list:
            return self.container(value, depth)
        try:
            return self.other(value, depth)
        except Exception as exc:  # user code (__iter__, __str__, a serializer) raised
            return self.marker(
                "unrepresentable", type=_type_name(value), error=_clean(describe_error(exc))
            )

    def integer(self, value: int) -> Any:
        if NEG_BIG_INT < value < BIG_INT:
            self.budget -= 8
            return value
        # Its digits are not written out (Python refuses the conversion): how many there are.
        digits = value.bit_length() * 30103 // 100000 + 1  # about log10(2) per bit
        return self.marker("int", digits=digits)

    def other(self, value: Any, depth: int) -> Any:
        if isinstance(value, str):
            return self.text(str.__str__(value))
        if isinstance(value, int):
            return self.integer(int.__index__(value))
        if isinstance(value, float):
            return self.convert(float.__float__(value), depth)
        if isinstance(value, bytes | bytearray | memoryview):
            return self.binary(bytes(value))
        if isinstance(value, Mapping | list | tuple | set | frozenset):
            return self.container(value, depth)
        # Models, dataclasses, dates, enums, UUIDs, decimals, paths: as pydantic's JSON mode
        # writes them; anything else by str(). The result is converted again (it may hold
        # anything), one level deeper.
        plain = to_jsonable_python(value, fallback=_str_fallback, serialize_unknown=True)
        return self.convert(plain, depth)  # JSON types only now: this ends

    def binary(self, data: bytes) -> Any:
        try:
            return self.text(data.decode("utf-8"))
        except UnicodeDecodeError:
            pass
        room = max(self.budget - _MARKER_COST, 0) * 3 // 4  # base64 is 4/3 of the bytes
        head = data[:room]
        self.budget -= (len(head) + 2) // 3 * 4
        details: dict[str, Any] = {"size": len(data), "base64": base64.b64encode(head).decode()}
        if len(head) < len(data):
            details["truncated"] = True
        return self.marker("bytes", **details)

    def container(self, value: Any, depth: int) -> Any:
        kind = _type_name(value)
        key = id(value)
        if key in self.path:
            return self.marker("cycle", type=kind)
        # At the deepest level a container may hold scalars only (a marker there would be one
        # level too deep): one that holds more is replaced, as is anything deeper.
        if depth >= MAX_DEPTH and (depth > MAX_DEPTH or not _flat(value)):
            return self.marker("depth", type=kind, size=_len(value))
        self.path.add(key)
        try:
            self.budget -= 2
            if isinstance(value, Mapping):
                out_map: dict[str, Any] = {}
                for k, item in value.items():
                    if self.budget <= 0:  # cut: the kept keys, marked, with the original size
                        self.budget -= _MARKER_COST
                        out_map[MARKER] = "truncated"
                        out_map[SIZE] = _len(value)
                        return out_map
                    name = self.key(k, out_map)
                    out_map[name] = self.convert(item, depth + 1)
                return out_map
            out_list: list[Any] = []
            items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
            for item in items:
                if self.budget <= 0:  # cut: the kept items, then a marker with the size
                    cut = self.marker("truncated", type=kind, size=_len(value))
                    if depth >= MAX_DEPTH:  # no room for the marker inside
                        return cut
                    out_list.append(cut)
                    return out_list
                self.budget -= 1
                out_list.append(self.convert(item, depth + 1))
            return out_list
        finally:
            self.path.discard(key)

    def key(self, key: Any, taken: dict[str, Any]) -> str:
        if isinstance(key, str):
            name = str.__str__(key)
        elif key is None or isinstance(key, bool):
            name = "null" if key is None else ("true" if key else "false")  # as json.dumps
        else:
            try:  # 1 -> "1" and 1.5 -> "1.5" as json.dumps writes them; others by repr
                name = repr(key)
            except Exception as exc:  # user code raised (or an int too long to write)
                name = f"<unrepresentable {_type_name(key)}: repr() raised {_type_name(exc)}>"
        name = self.text(name)
        if name in taken:  # two keys wrote the same: keep both, visibly
            n = 2
            while f"{name}#{n}" in taken:
                n += 1
            name = f"{name}#{n}"
        self.budget -= 2
        return name


def _flat(value: Any) -> bool:
    """Whether a container holds plain scalars only (nothing that becomes a container)."""
    try:
        items = value.values() if isinstance(value, Mapping) else value
        for item in items:
            t = type(item)
            if t is int:
                if not NEG_BIG_INT < item < BIG_INT:
                    return False
            elif not (t is str or t is float or t is bool or item is None):
                return False
    except Exception:  # a container whose iteration raises: not flat
        return False
    return True


def _len(value: Any) -> int | None:
    try:
        return len(value)
    except Exception:  # a container without a length (or one that raises): size unknown
        return None


def _str_fallback(value: Any) -> Any:
    return str(value)
