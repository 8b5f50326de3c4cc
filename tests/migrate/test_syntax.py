"""The source rules shared by the scanner and both rewriters."""

from __future__ import annotations

import pytest
from agentengine_migrate.syntax import absolute_module


@pytest.mark.parametrize(
    ("module", "level", "package", "expected"),
    [
        ("a.b", 0, None, "a.b"),  # absolute: the package does not matter
        ("a.b", 0, "pkg", "a.b"),
        ("legacy", 1, "agentengine", "agentengine.legacy"),
        (None, 1, "agentengine", "agentengine"),  # from . import legacy
        ("legacy", 2, "agentengine.sub", "agentengine.legacy"),
        (None, 2, "a.b.c", "a.b"),
        ("x", 3, "a.b.c", "a.x"),
        ("x", 4, "a.b.c", None),  # climbs above the top-level package
        ("legacy", 1, None, None),  # outside a package
    ],
)
def test_absolute_module(
    module: str | None, level: int, package: str | None, expected: str | None
) -> None:
    assert absolute_module(module, level, package) == expected
