"""``NamedRegistry``: things contributed by plugins, by unique name, with their owners.

The agent, tool and scoped-resource registries are all this: ``add`` refuses a second entry of
a name, naming both plugins; ``owner(name)`` says which plugin contributed it. The factory sets
``current_plugin`` while it calls each plugin's registration hook.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from agentengine.errors import RegistrationError

__all__ = ["NamedRegistry"]

_T = TypeVar("_T")


class NamedRegistry(Generic[_T]):
    """Entries by unique name, each remembered with the plugin that added it."""

    #: What an entry is called in messages ("agent", "tool", ...).
    kind = "entry"
    #: The verb of the duplicate message ("registered", "declared").
    verb = "registered"

    def __init__(self) -> None:
        self._entries: dict[str, _T] = {}
        self._get = self._entries.get  # one bound method, shared by every caller of getter()
        self._owners: dict[str, str | None] = {}
        #: The plugin whose registration hook is running (set by the factory).
        self.current_plugin: str | None = None

    def _check_new(self, name: str) -> None:
        """Raise ``RegistrationError`` naming both plugins if ``name`` is taken."""
        if name in self._entries:
            raise RegistrationError(
                f"{self.kind} {name!r} is {self.verb} twice: by plugin {self._owners[name]!r} "
                f"and by plugin {self.current_plugin!r}; rename one of them or disable a plugin"
            )

    def _insert(self, name: str, entry: _T) -> _T:
        self._check_new(name)
        self._entries[name] = entry
        self._owners[name] = self.current_plugin
        return entry

    def remove(self, name: str) -> None:
        """Forget ``name`` (nothing happens if it is not there)."""
        self._entries.pop(name, None)
        self._owners.pop(name, None)

    def owner(self, name: str) -> str | None:
        """The name of the plugin that contributed ``name``."""
        return self._owners.get(name)

    def get(self, name: str) -> _T | None:
        """The entry called ``name``, or None."""
        return self._entries.get(name)

    def getter(self) -> Callable[[str], _T | None]:
        """``get`` as the underlying dict's own method: the same answers, now and after later
        additions, without a Python call (for lookups on the run path)."""
        return self._get

    def names(self) -> list[str]:
        """Sorted names."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[_T]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)
