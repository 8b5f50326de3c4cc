"""``agentengine/__init__.py`` lists its public names once (the lazy export table); the
``TYPE_CHECKING`` imports that type checkers read must name exactly the same ones, from the
modules the table says, so that the two cannot drift."""

from __future__ import annotations

import ast
import inspect

import agentengine


def _type_checking_imports() -> dict[str, str]:
    tree = ast.parse(inspect.getsource(agentengine))
    found: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom) and stmt.module
                for alias in stmt.names:
                    assert alias.asname == alias.name, f"{alias.name}: re-export it as itself"
                    found[alias.name] = stmt.module
    return found


def test_type_checking_imports_match_the_lazy_table() -> None:
    table = agentengine._EXPORTS
    assert _type_checking_imports() == table


def test_all_is_the_table_and_every_name_resolves() -> None:
    assert sorted(agentengine.__all__) == sorted([*agentengine._EXPORTS, "__version__"])
    for name in agentengine.__all__:
        assert getattr(agentengine, name) is not None
