"""Values user code may produce that JSON cannot carry as they are, shared by the tests of the
wire-safe conversion and of the engine's events."""

from __future__ import annotations

from typing import Any


class Unprintable:
    """An object whose str() and repr() raise, as a broken library type might."""

    def __str__(self) -> str:
        raise ValueError("no str for you")

    __repr__ = __str__


def deep(levels: int) -> list[Any]:
    """Lists nested ``levels`` deep."""
    value: list[Any] = []
    for _ in range(levels):
        value = [value]
    return value


def cycle() -> dict[str, Any]:
    """A dict that contains itself."""
    value: dict[str, Any] = {"name": "loop"}
    value["self"] = value
    return value
