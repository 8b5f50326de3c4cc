"""Tool names as the model API accepts them (pure logic)."""

from __future__ import annotations

import re

import pytest
from agentengine_pydantic_ai import model_tool_name
from agentengine_pydantic_ai.names import ToolNames, is_per_user_pattern, match_patterns

FITS = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@pytest.mark.parametrize(
    ("name", "mapped"),
    [
        ("forecast", "forecast"),
        ("get-weather_2", "get-weather_2"),
        ("time.get_current_time", "time__get_current_time"),
        ("docs.v2.search", "docs__v2__search"),
        ("a b", "a_x20_b"),
        ("café", "caf_xe9_"),
    ],
)
def test_names_are_mapped_as_documented(name: str, mapped: str) -> None:
    assert model_tool_name(name) == mapped
    assert FITS.match(mapped)


def test_long_names_are_cut_and_stay_distinct() -> None:
    a, b = "srv." + "x" * 80 + ".a", "srv." + "x" * 80 + ".b"
    ma, mb = model_tool_name(a), model_tool_name(b)
    assert FITS.match(ma) and FITS.match(mb)
    assert len(ma) == 64 and ma != mb


def test_the_mapping_goes_both_ways_and_refuses_a_collision() -> None:
    names = ToolNames(["time.now", "forecast"])
    assert names.to_model == {"time.now": "time__now", "forecast": "forecast"}
    assert names.to_engine == {"time__now": "time.now", "forecast": "forecast"}
    with pytest.raises(ValueError, match=r"'time\.now' and 'time__now' would both be called"):
        ToolNames(["time.now", "time__now"])


def test_patterns() -> None:
    assert match_patterns(["fore*", "add", "x"], ["add", "forecast", "forest"]) == {
        "fore*": ["forecast", "forest"],
        "add": ["add"],
        "x": [],
    }
    assert is_per_user_pattern("time.*") and not is_per_user_pattern("forecast")
