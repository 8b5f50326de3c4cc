"""Scoped resources as plugins declare them: ``ResourceRegistry`` (filled by the
``agentengine_register_resources`` hook) and the scope of a run that has none (``EMPTY_SCOPE``).

Opening and closing them for a run is the built-in request-scope plugin's job
(``agentengine.request_scope``).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agentengine.definitions.registry import NamedRegistry
from agentengine.errors import RegistrationError, UnknownResourceError

if TYPE_CHECKING:
    from agentengine.definitions.run import RunContext

__all__ = [
    "EMPTY_SCOPE",
    "ResourceFactory",
    "ResourceRegistry",
    "ScopedResource",
    "unknown_resource_error",
]

#: What ``ResourceRegistry.add`` takes: an async context manager factory (no argument or the
#: ``RunContext``), or an async generator function.
ResourceFactory = Callable[..., Any]


@dataclass(frozen=True, slots=True)
class ScopedResource:
    """One declared resource: ``open(run)`` returns an async context manager."""

    name: str
    open: Callable[[RunContext], AbstractAsyncContextManager[Any]]
    plugin: str | None = None
    description: str = ""


def _as_opener(name: str, factory: ResourceFactory) -> Callable[[Any], Any]:
    if not callable(factory):
        raise RegistrationError(
            f"scoped resource {name!r}: the factory must be callable (an async context manager "
            f"factory taking no argument or the RunContext), got {factory!r}"
        )
    if inspect.isasyncgenfunction(factory):
        factory = contextlib.asynccontextmanager(factory)
    try:
        params = [
            p
            for p in inspect.signature(factory).parameters.values()
            if p.default is inspect.Parameter.empty
            and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):  # a builtin without a signature: assume no argument
        params = []
    if len(params) > 1:
        raise RegistrationError(
            f"scoped resource {name!r}: the factory takes {len(params)} required arguments "
            f"({', '.join(p.name for p in params)}); it may take none or just the RunContext"
        )
    if params:
        return factory
    no_arg = factory
    return lambda run: no_arg()


class ResourceRegistry(NamedRegistry[ScopedResource]):
    """Scoped resources by name; ``add`` refuses a second one of the same name."""

    kind = "scoped resource"
    verb = "declared"

    def add(self, name: str, factory: ResourceFactory, *, description: str = "") -> ScopedResource:
        """Declare resource ``name``. ``factory`` returns an async context manager; it takes
        no argument or the ``RunContext`` (for the user's id, say), or is an async generator
        function yielding the resource once (wrapped with ``asynccontextmanager``)."""
        if not isinstance(name, str) or not name or name != name.strip():
            raise RegistrationError(f"a scoped resource needs a non-empty name, got {name!r}")
        self._check_new(name)
        resource = ScopedResource(
            name,
            _as_opener(name, factory),
            self.current_plugin,
            description or (inspect.getdoc(factory) or "").split("\n\n", 1)[0],
        )
        return self._insert(name, resource)


def unknown_resource_error(name: object, available: list[str]) -> UnknownResourceError:
    """The error for a lookup of an undeclared resource, listing the declared ones."""
    declared = ", ".join(available) or "none"
    return UnknownResourceError(
        f"no scoped resource named {name!r}; declared resources: {declared}. A plugin declares "
        "one with its agentengine_register_resources hook: registry.add(name, factory)"
    )


class _NoScope:
    """``run.scope`` when no plugin declared a resource: every lookup says so."""

    __slots__ = ()

    def __getitem__(self, name: str) -> Awaitable[Any]:
        raise unknown_resource_error(name, [])

    def __contains__(self, name: object) -> bool:
        return False

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0

    @property
    def opened(self) -> list[str]:
        """Names of opened resources (always none)."""
        return []

    def __repr__(self) -> str:
        return "<RequestScope (no resources declared)>"


#: The scope of a run when no scoped resource is declared.
EMPTY_SCOPE: Any = _NoScope()
