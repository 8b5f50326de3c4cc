"""Wire-safe event values: whatever user code produces, every event serialises, round-trips
and stays within the event size limit, with a visible marker where something was replaced."""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agentengine import (
    parse_event,
)
from agentengine.events import AgentCompletedEvent, BaseEvent, RunStatus, wire_size
from agentengine.wire import MARKER, MAX_DEPTH, SIZE, wire_safe, wire_text, wire_value
from hostile_values import Unprintable, cycle, deep
from hypothesis import HealthCheck, given, settings, strategies as st

#: name -> (a hostile value, what its wire form must show)
HOSTILE: dict[str, Any] = {
    "lone_surrogate": "a\ud800b",
    "bytes_not_utf8": b"\xff\xfe\x00",
    "cycle": cycle(),
    "tuple_keys": {("a", 1): "x", ("b", 2): "y"},
    "deep_300": deep(300),
    "str_raises": [Unprintable()],
    "huge_int": 10**5000,
}


def wire_ok(event: BaseEvent) -> dict[str, Any]:
    """Everything a transport does with an event, checked: it must never fail."""
    data = event.to_wire()
    text = json.dumps(data, ensure_ascii=False)
    text.encode("utf-8")  # what a WebSocket or SSE transport sends
    event.model_dump_json().encode("utf-8")
    back = parse_event(text)
    assert back.to_wire() == data or _has_nan(data)
    return data


def _has_nan(value: Any) -> bool:
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, dict):
        return any(_has_nan(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_nan(v) for v in value)
    return False


def _markers(value: Any) -> list[str]:
    """The marker kinds found in a wire value."""
    if isinstance(value, dict):
        found = [value[MARKER]] if MARKER in value else []
        return found + [m for v in value.values() for m in _markers(v)]
    if isinstance(value, list):
        return [m for v in value for m in _markers(v)]
    return []


# -- the conversion ---------------------------------------------------------------------------


def test_plain_values_come_back_as_the_same_object() -> None:
    for value in ({"n": 5, "q": "text", "f": 1.5, "b": True, "z": None}, [1, "a", [2]], "ü€😀"):
        out, size = wire_value(value)
        assert out is value
        assert size > 0


def test_lone_surrogates_become_replacement_characters_and_pairs_join() -> None:
    assert wire_safe("a\ud800b") == "a\ufffdb"
    assert wire_safe("\ud83d\ude00") == "😀"  # a pair as two code points: the character
    assert wire_safe({"k\udc00": ["\udfff"]}) == {"k\ufffd": ["\ufffd"]}
    assert wire_text(b"\xff")[0] == "b'\\xff'"


def test_bytes_are_text_when_utf8_else_a_base64_marker() -> None:
    assert wire_safe(b"caf\xc3\xa9") == "café"
    marker = wire_safe(b"\xff\xfe\x00")
    assert marker == {
        MARKER: "bytes",
        "size": 3,
        "base64": base64.b64encode(b"\xff\xfe\x00").decode(),
    }


def test_cycles_depth_keys_and_unrepresentable_objects_get_markers() -> None:
    looped = wire_safe(cycle())
    assert looped == {"name": "loop", "self": {MARKER: "cycle", "type": "dict"}}
    nested = wire_safe(deep(MAX_DEPTH + 10))
    inner = nested
    for _ in range(MAX_DEPTH):
        inner = inner[0]
    assert inner == {MARKER: "depth", "type": "list", "size": 1}
    assert wire_value(deep(MAX_DEPTH))[0] == deep(MAX_DEPTH)  # the deepest allowed: as is
    assert wire_safe({("a", 1): 1, 2: "two", None: 0, "2": "taken"}) == {
        "('a', 1)": 1,
        "2": "two",
        "null": 0,
        "2#2": "taken",
    }
    bad = wire_safe({"x": Unprintable()})["x"]
    assert bad[MARKER] == "unrepresentable" and bad["type"] == "Unprintable"
    assert "ValueError" in bad["error"]
    assert wire_safe(10**5000) == {MARKER: "int", "digits": 5001}
    assert wire_safe((1, {2}, frozenset({"b", "a"}))) == [1, [2], ["a", "b"]]


def test_known_objects_as_pydantic_writes_them() -> None:
    @dataclass
    class Point:
        x: int
        label: bytes

    when = datetime(2026, 1, 2, tzinfo=UTC)
    assert wire_safe({"when": when, "p": Point(1, b"ok")}) == {
        "when": "2026-01-02T00:00:00Z",
        "p": {"x": 1, "label": "ok"},
    }
    assert wire_safe(object()).startswith("<object object")  # else str()


def test_strings_over_the_limit_are_cut_with_their_original_length() -> None:
    text, size = wire_text("x" * 100_000, 2_000)
    assert text.startswith("x" * 1_000)
    assert text.endswith("…[truncated: 100000 characters]")
    assert size <= 2_000 + 200
    out, size = wire_value({"a": "y" * 50_000, "b": "z"}, 4_000)
    assert out["a"].endswith("…[truncated: 50000 characters]")
    assert size <= 4_000 + 200


def test_containers_over_the_limit_keep_what_fits_and_are_marked_with_their_size() -> None:
    out, size = wire_value(list(range(100_000)), 2_000)
    assert out[-1] == {MARKER: "truncated", "type": "list", "size": 100_000}
    assert out[:-1] == list(range(len(out) - 1))
    assert 50 < len(out) < 2_000
    assert size <= 2_000 + 200
    out, _ = wire_value({f"k{i}": i for i in range(10_000)}, 2_000)
    assert out[MARKER] == "truncated" and out[SIZE] == 10_000
    assert 50 < len(out) < 2_000 and out["k0"] == 0
    big = wire_safe(b"\xff" * 1_000_000, 3_000)
    assert big[MARKER] == "bytes" and big["size"] == 1_000_000 and big["truncated"] is True
    assert len(big["base64"]) < 4_000


def test_a_wide_shared_structure_is_bounded_not_walked_exponentially() -> None:
    value: list[Any] = ["leaf"]
    for _ in range(40):
        value = [value, value]  # 2**40 leaves if walked in full
    out, size = wire_value(value, 10_000)
    assert size <= 10_000 + 64 * 2 * 64
    json.dumps(out)


def test_the_conversion_is_idempotent() -> None:
    for value in HOSTILE.values():
        once = wire_safe(value)
        assert wire_safe(once) == once
        assert wire_value(once)[0] is once


# -- property: arbitrary values ---------------------------------------------------------------

_json_leaf = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(st.characters(exclude_categories=["Cs"]))
)
JSON_SAFE = st.recursive(
    _json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=20,
)
_hostile_leaf = (
    _json_leaf
    | st.floats()
    | st.text()  # with lone surrogates
    | st.binary()
    | st.integers(0, 5).map(lambda n: 10**4400 + n)  # too long for json.dumps
    | st.builds(Unprintable)
    | st.builds(object)
    | st.datetimes(timezones=st.just(UTC))
    | st.frozensets(st.integers(), max_size=3)
)
HOSTILE_VALUES = st.recursive(
    _hostile_leaf,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(
            st.text(max_size=5) | st.integers() | st.tuples(st.integers()), inner, max_size=4
        )
    ),
    max_leaves=20,
)


def _completed(output: Any, limit: int = 262_144) -> AgentCompletedEvent:
    """An event as the engine builds it."""
    from agentengine.events import _build

    out, size = wire_value(output, limit)
    fields = {
        "type": "agent_completed",
        "run_id": "r",
        "user_id": "u",
        "thread_id": "t",
        "agent": "a",
        "seq": 2,
        "ts": datetime.now(UTC),
        "cursor": None,
        "status": RunStatus.SUCCEEDED,
        "output": out,
        "error": None,
        "duration_ms": 1.0,
    }
    return _build(AgentCompletedEvent, fields, 512 + size)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(HOSTILE_VALUES)
def test_any_value_makes_an_event_that_serialises_and_round_trips(value: Any) -> None:
    wire_ok(_completed(value))


@settings(max_examples=300)
@given(JSON_SAFE)
def test_a_json_safe_value_is_carried_unchanged(value: Any) -> None:
    event = _completed(value)
    assert event.output is value
    data = wire_ok(event)
    assert data["output"] == value
    assert json.loads(json.dumps(data))["output"] == value


@settings(max_examples=100)
@given(HOSTILE_VALUES, st.integers(min_value=1024, max_value=20_000))
def test_any_value_stays_within_the_limit(value: Any, limit: int) -> None:
    out, size = wire_value(value, limit)
    text = json.dumps(out, ensure_ascii=False)
    # The estimate covers the text within the markers' own overhead.
    assert len(text.encode("utf-8")) <= limit + 64 * MAX_DEPTH
    assert size <= limit + 64 * MAX_DEPTH


def test_events_made_by_hand_still_serialise() -> None:
    event = AgentCompletedEvent(
        run_id="r",
        user_id="u",
        thread_id="t",
        agent="a",
        seq=1,
        ts=datetime.now(UTC),
        status=RunStatus.SUCCEEDED,
        output={"raw": b"\xff", "s": "\ud800"},
    )
    data = event.to_wire()
    assert data["output"]["raw"][MARKER] == "bytes" and data["output"]["s"] == "\ufffd"
    json.dumps(data).encode("utf-8")
    assert wire_size(event) > 512
