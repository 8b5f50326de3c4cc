"""Every error the core defines or exports is an ``AgentEngineError``, defined in
``agentengine.errors`` and drawn in that module's docstring tree with its second base."""

from __future__ import annotations

import importlib
import pkgutil
import re
import warnings
from types import ModuleType

import agentengine
from agentengine import errors
from agentengine.errors import AgentEngineError

# Modules that run something on import (the ``python -m agentengine`` entry point).
_SKIP = {"agentengine.__main__"}


def _core_modules() -> list[ModuleType]:
    modules = [agentengine]
    for info in pkgutil.walk_packages(agentengine.__path__, "agentengine."):
        if info.name in _SKIP:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # deprecated alias modules
            modules.append(importlib.import_module(info.name))
    return modules


def _core_exceptions() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for module in _core_modules():
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseException)
                and value.__module__.startswith("agentengine")
            ):
                found[f"{module.__name__}.{value.__name__}"] = value
    for name in agentengine.__all__:
        value = getattr(agentengine, name)
        if isinstance(value, type) and issubclass(value, BaseException):
            found[f"agentengine.{name}"] = value
    return found


def _drawn_tree() -> dict[str, str]:
    """``{class name: second base or ""}`` from the errors module's docstring."""
    return {name: second for name, (_, second) in _drawn_parents().items()}


def _drawn_parents() -> dict[str, tuple[str, str]]:
    """``{class name: (drawn parent, second base or "")}``; a nested entry (``│   └── X``)
    has the entry above it one level up as its parent."""
    drawn: dict[str, tuple[str, str]] = {}
    parents = ["AgentEngineError"]
    for line in (errors.__doc__ or "").splitlines():
        match = re.match(r"\s+((?:│   |    )*)[├└]── (\w+)\s*(?:\(also a (\w+)\))?", line)
        if match:
            depth = len(match.group(1)) // 4
            del parents[depth + 1 :]
            drawn[match.group(2)] = (parents[depth], match.group(3) or "")
            parents.append(match.group(2))
    return drawn


def test_every_core_exception_is_in_the_one_tree() -> None:
    drawn = _drawn_tree()
    found = _core_exceptions()
    assert len(found) >= 13  # the walk really found the errors (not an empty loop)
    for where, cls in found.items():
        assert issubclass(cls, AgentEngineError), f"{where} is not an AgentEngineError"
        assert cls.__module__ == "agentengine.errors", f"{where} is defined outside errors.py"
        if cls is not AgentEngineError:
            assert cls.__name__ in drawn, f"{where} is missing from errors.py's tree"


def test_the_drawn_tree_matches_the_classes() -> None:
    drawn = _drawn_tree()
    defined = {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, AgentEngineError)
    }
    assert set(drawn) == defined - {"AgentEngineError"}
    parents = _drawn_parents()
    for name, second in drawn.items():
        cls = getattr(errors, name)
        assert cls.__bases__[0] is getattr(errors, parents[name][0]), name
        extra = [base.__name__ for base in cls.__bases__[1:]]
        assert extra == ([second] if second else []), f"{name}: bases {extra}, drawn {second!r}"


def test_argument_errors_are_engine_errors_and_value_errors() -> None:
    assert issubclass(agentengine.ToolArgumentError, AgentEngineError)
    assert issubclass(agentengine.ToolArgumentError, ValueError)
    assert issubclass(agentengine.InvalidContextError, ValueError)
    assert issubclass(agentengine.ConfigError, ValueError)


def test_moved_errors_stay_importable_where_they_were() -> None:
    from agentengine.definitions.tools import ToolArgumentError
    from agentengine.plugins.loading import PluginHookError
    from agentengine.request_scope import ScopedResourceError, UnknownResourceError

    assert PluginHookError is errors.PluginHookError
    assert ScopedResourceError is errors.ScopedResourceError
    assert UnknownResourceError is errors.UnknownResourceError
    assert ToolArgumentError is errors.ToolArgumentError


def test_describe_error_shows_type_and_text_and_survives_a_broken_str() -> None:
    class Broken(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert errors.describe_error(ValueError("bad")) == "ValueError: bad"
    assert errors.describe_error(KeyError()) == "KeyError"
    assert errors.describe_error(Broken()) == "Broken: <str() of the exception raised>"


def test_every_plugin_exception_is_an_agentengine_error() -> None:
    """The first-party plugins' errors (their internal ones too) join the one tree, so
    ``except AgentEngineError`` catches whatever agentengine raises."""
    import agentengine_mcp
    import agentengine_migrate
    import agentengine_server

    found: dict[str, type[BaseException]] = {}
    for package in (agentengine_mcp, agentengine_migrate, agentengine_server):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name.endswith("__main__"):
                continue
            module = importlib.import_module(info.name)
            for value in vars(module).values():
                if (
                    isinstance(value, type)
                    and issubclass(value, BaseException)
                    and value.__module__ == module.__name__
                ):
                    found[f"{module.__name__}.{value.__name__}"] = value
    assert len(found) >= 10  # the walk really found the plugins' errors
    strays = sorted(where for where, cls in found.items() if not issubclass(cls, AgentEngineError))
    assert strays == []
