"""The rules for ids in ``UserExecutionContext``: NFC, printable text, every refusal naming the
character by code point and position."""

from __future__ import annotations

import contextlib
import unicodedata

import pytest
from agentengine import InvalidContextError, UserExecutionContext
from hypothesis import example, given, strategies as st

ID_FIELDS = ("user_id", "thread_id", "run_id", "request_id", "parent_request_id")

#: Categories an id may never contain, with a character of each.
REFUSED = {
    "Cc": ["\x00", "\x1b", "\x7f", "\x85", "\x9f"],
    "Cf": ["\u202e", "\u200b", "\u200d", "\u2066", "\ufeff", "\u00ad"],
    "Cs": ["\ud800", "\udfff"],
    "Co": ["\ue000", "\U000f0000"],
    "Cn": ["\u0378", "\U000e0080"],
    "Zl": ["\u2028"],
    "Zp": ["\u2029"],
    "Zs": ["\u00a0", "\u3000", "\u2009"],
}


def _context(field: str, value: str) -> UserExecutionContext:
    fields = {"user_id": "alice", "thread_id": "t-1", "run_id": "r-1", field: value}
    return UserExecutionContext(**fields)


def _is_allowed_char(c: str) -> bool:
    category = unicodedata.category(c)
    if category == "Zs":
        return c == " "
    return category not in {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


@pytest.mark.parametrize("field", ID_FIELDS)
@pytest.mark.parametrize(
    ("category", "char"), [(cat, c) for cat, chars in REFUSED.items() for c in chars]
)
def test_each_refused_class_is_named_with_its_code_point_and_position(
    field: str, category: str, char: str
) -> None:
    value = "ab" + char + "cd"
    with pytest.raises(InvalidContextError) as info:
        _context(field, value)
    message = str(info.value)
    assert field in message
    assert f"U+{ord(char):04X}" in message
    assert f"category {category}" in message
    assert "position 2" in message
    name = unicodedata.name(char, None)
    if name is not None:
        assert name in message
    # The message itself stays printable: the offending character is never echoed raw.
    assert char not in message


def test_the_bidi_override_example_reads_well() -> None:
    with pytest.raises(InvalidContextError) as info:
        UserExecutionContext.for_user("ali\u202ece")
    assert "U+202E RIGHT-TO-LEFT OVERRIDE" in str(info.value)
    assert "position 3" in str(info.value)


def test_non_nfc_ids_are_refused_with_their_nfc_form() -> None:
    decomposed = "Jose\u0301"  # e + COMBINING ACUTE ACCENT
    with pytest.raises(InvalidContextError) as info:
        UserExecutionContext.for_user(decomposed)
    message = str(info.value)
    assert "NFC" in message
    assert ascii(unicodedata.normalize("NFC", decomposed)) in message
    # The composed form is the id.
    assert UserExecutionContext.for_user("Jos\u00e9").user_id == "Jos\u00e9"


@pytest.mark.parametrize(
    "value",
    [
        "alice",
        "alice smith",
        "Jos\u00e9",
        "\u5f20\u4f1f",  # Chinese
        "\u0645\u062d\u0645\u062f",  # Arabic: right-to-left letters are fine, overrides are not
        "\U0001f600-fan",  # an emoji
        "user@example.com",
        "auth0|5f7c8ec7c33c6c004bbafe82",
        "run-" + "a" * 32,
    ],
)
def test_ordinary_ids_are_accepted_unchanged(value: str) -> None:
    for field in ID_FIELDS:
        ctx = _context(field, value)
        assert getattr(ctx, field) == value


@given(st.text(alphabet=st.characters(exclude_categories=()), min_size=1, max_size=40))
@example("ali\u202ece")
@example("e\u0301")
@example("a\ud800")
@example("a\x7fb")
@example("a\u00a0b")
def test_any_accepted_id_is_nfc_printable_text(value: str) -> None:
    try:
        ctx = UserExecutionContext.for_user(value)
    except InvalidContextError:
        return
    assert ctx.user_id == value
    assert unicodedata.is_normalized("NFC", value)
    assert all(_is_allowed_char(c) for c in value), ascii(value)


@given(st.text(alphabet=st.characters(exclude_categories=()), min_size=1, max_size=40))
def test_every_refusal_is_an_invalid_context_error(value: str) -> None:
    # Whatever the text, refusing it never raises anything but InvalidContextError.
    for field in ID_FIELDS:
        with contextlib.suppress(InvalidContextError):
            _context(field, value)


def test_the_documented_placeholder_list_is_the_refused_one() -> None:
    """docs/architecture.md lists every placeholder id, and each listed one is refused."""
    import re
    from pathlib import Path

    from agentengine.context import PLACEHOLDER_IDS

    text = (Path(__file__).resolve().parents[2] / "docs" / "architecture.md").read_text()
    paragraph = text[text.index("**Placeholders**") :].split("\n\n", 1)[0]
    listed = set(re.findall(r"`([^`]+)`", paragraph.split("one such id:", 1)[1].split(".")[0]))
    assert listed == set(PLACEHOLDER_IDS)
    for value in sorted(listed):
        with pytest.raises(InvalidContextError, match="placeholder"):
            UserExecutionContext.for_user(value.upper())
