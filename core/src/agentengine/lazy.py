"""``lazy_exports``: a package namespace whose names are imported on first use (PEP 562).

Every ``agentengine`` command loads every plugin's entry point, so a plugin package whose
``__init__`` imports its whole implementation (an SDK, a web framework) slows all of them.
With this, the package keeps its public names and imports each module when a name is used::

    # my_plugin/__init__.py
    from agentengine.lazy import lazy_exports

    __getattr__, __dir__ = lazy_exports(__name__, {"Client": "my_plugin.client"})

Pair it with ``if TYPE_CHECKING:`` imports of the same names for type checkers.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return the ``__getattr__`` and ``__dir__`` of ``package``: ``exports`` maps each public
    name to the module that defines it. A name is imported on first access and then cached in
    the package, so later lookups cost nothing."""
    table = dict(exports)

    def __getattr__(name: str) -> Any:  # noqa: N807 - the module hook's required name
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:  # noqa: N807
        return sorted({*vars(sys.modules[package]), *table})

    return __getattr__, __dir__
