"""``@tool`` and ``@agent`` refuse parameter types that have no JSON schema, naming the function,
the parameter and the types allowed; ``check_plugin`` flags parameters without annotations."""

from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass
from typing import Any, Literal

import pytest
from agentengine import RegistrationError, RunContext, agent, hookimpl, tool
from agentengine.testing import check_plugin
from pydantic import BaseModel
from typing_extensions import TypedDict


class Point:  # a plain class: no schema
    def __init__(self, x: int) -> None:
        self.x = x


def test_a_custom_class_is_refused_naming_tool_parameter_and_allowed_types() -> None:
    with pytest.raises(RegistrationError) as caught:

        @tool
        async def distance(origin: Point, scale: int = 1) -> float:
            """Distance from the origin."""
            return 0.0

    message = str(caught.value)
    assert "tool 'distance'" in message
    assert "test_parameter_types" in message  # the function's module, so it can be found
    assert "parameter 'origin'" in message
    assert "Point" in message
    assert "IsInstanceSchema" not in message
    assert "str, int, float, bool" in message
    assert "pydantic model" in message


def test_an_agent_input_of_a_custom_class_is_refused_when_defined() -> None:
    with pytest.raises(RegistrationError) as caught:

        @agent(name="walker")
        async def walker(run: RunContext, start: Point) -> str:
            """Walk."""
            return ""

    message = str(caught.value)
    assert "agent 'walker'" in message
    assert "parameter 'start'" in message
    assert "Point" in message


def test_an_unresolved_annotation_names_the_parameter_and_the_missing_name() -> None:
    namespace: dict[str, Any] = {}
    source = (
        "from __future__ import annotations\n"
        "from agentengine import tool\n"
        "@tool\n"
        "async def k(city: str, when: Moment) -> str:\n"
        "    '''Look up.'''\n"
        "    return city\n"
    )
    with pytest.raises(RegistrationError) as caught:
        exec(compile(source, "weather_tools.py", "exec"), namespace)
    message = str(caught.value)
    assert "tool 'k'" in message
    assert "parameter 'when'" in message
    assert "'Moment'" in message
    assert "k_args" not in message
    assert "TYPE_CHECKING" in message


class Unit(enum.Enum):
    C = "C"
    F = "F"


class Place(BaseModel):
    city: str


class Span(TypedDict):
    days: int


@dataclass
class Window:
    start: datetime.date


def test_the_allowed_types_are_accepted() -> None:
    @tool
    async def everything(
        run: RunContext,
        a: str,
        b: int,
        c: float,
        d: bool,
        e: None,
        f: Literal["x", "y"],
        g: Unit,
        h: list[int],
        i: dict[str, float],
        j: tuple[int, str],
        k: datetime.datetime,
        m: Place,
        n: Span,
        o: Window,
        p: int | None = None,
        q: Any = None,
    ) -> str:
        """Takes every kind of parameter."""
        return ""

    assert set(everything.input_schema["properties"]) == set("abcdefghijkmnopq")


def test_check_plugin_flags_parameters_without_annotations() -> None:
    @tool
    async def loose(city, days: int = 1) -> str:  # type: ignore[no-untyped-def]
        """Forecast."""
        return ""

    @agent(name="vague")
    async def vague(run, text) -> str:  # type: ignore[no-untyped-def]
        """Vague."""
        return ""

    class Plugin:
        @hookimpl
        def agentengine_register_tools(self, registry):  # type: ignore[no-untyped-def]
            registry.add(loose)

        @hookimpl
        def agentengine_register_agents(self, registry):  # type: ignore[no-untyped-def]
            registry.add(vague)

    problems = check_plugin(Plugin())
    assert any(
        "tool 'loose'" in p and "parameter 'city' has no type annotation" in p for p in problems
    ), problems
    assert any(
        "agent 'vague'" in p and "parameter 'text' has no type annotation" in p for p in problems
    ), problems
    assert not any("'days'" in p or "'run'" in p for p in problems), problems
