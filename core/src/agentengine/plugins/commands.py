"""The commands plugins declare in entry-point group ``agentengine.commands``.

A plugin distribution names each command it adds to ``agentengine`` in its metadata::

    [project.entry-points."agentengine.commands"]
    check = "agentengine_migrate.cli:check_command"

so that ``agentengine check`` finds the command by reading the installed distributions'
``entry_points.txt`` and imports only that module: not the other plugins, not pluggy, not even
``importlib.metadata`` (whose import alone costs more than a pre-commit run of ``check`` scans
in). The object named is a click command, or a function of no arguments that returns one.

A declared command follows its distribution's plugin (its entry points in group
``agentengine``): it is available unless every one of them is disabled or left out of the
allow-list by the ``[plugins]`` configuration. An opt-in plugin's commands are declared
commands like any other (opt-in is an attribute of the plugin object, which is not imported
here); a plugin whose commands should appear only once it is enabled adds them through the
``agentengine_cli_commands`` hook instead.

Distributions are found as ``importlib.metadata`` finds them: ``*.dist-info`` and
``*.egg-info`` directories in the directories of ``sys.path``, the first of a name winning.
When the environment holds distributions that only ``importlib.metadata`` can see (a zip file
on ``sys.path``, a custom finder on ``sys.meta_path``), it is used instead.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agentengine.errors import PluginLoadError

if TYPE_CHECKING:
    from agentengine.plugins.selection import PluginSelection

__all__ = ["COMMAND_GROUP", "DeclaredCommand", "declared_commands"]

#: The entry-point group of the commands plugins add to ``agentengine``.
COMMAND_GROUP = "agentengine.commands"

#: The entry-point group of the plugins themselves (``loading.ENTRY_POINT_GROUP``; repeated
#: here because ``loading`` imports pluggy).
_PLUGIN_GROUP = "agentengine"

_WANTED = (COMMAND_GROUP, _PLUGIN_GROUP)


@dataclass(frozen=True)
class DeclaredCommand:
    """One command a distribution declares: ``name = value`` in ``agentengine.commands``."""

    name: str
    #: ``MODULE:ATTRIBUTE`` of the click command (or of a function returning it).
    value: str
    #: The distribution declaring it, as its metadata directory spells it.
    distribution: str
    #: The distribution's entry points in group ``agentengine``: the plugin it belongs to.
    plugins: tuple[str, ...] = ()

    def skip_reason(self, selection: PluginSelection) -> str | None:
        """Why the command is not available under ``selection``, or None when it is."""
        reasons = [selection.skip_reason(plugin) for plugin in self.plugins]
        if not reasons or any(reason is None for reason in reasons):
            return None
        return f"its plugin {self.plugins[0]!r} is not loaded: {reasons[0]}"

    def load(self) -> Any:
        """Import the object the entry point names. Raises ``PluginLoadError`` saying which
        entry point failed, why, and what to do."""
        module_name, _, attr = self.value.partition(":")
        try:
            obj: Any = importlib.import_module(module_name.strip())
            for part in filter(None, attr.strip().split(".")):
                obj = getattr(obj, part)
        except Exception as exc:
            text = str(exc).strip()
            cause = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
            fix = (
                f"reinstall {self.distribution}, or disable its plugin "
                f"({', '.join(self.plugins)}) in [plugins] disable"
                if self.plugins
                else f"reinstall or uninstall {self.distribution}"
            )
            raise PluginLoadError(
                f"command {self.name!r} of {self.distribution} ({self.name} = {self.value} in "
                f"entry-point group {COMMAND_GROUP}) could not be loaded: {cause}; {fix}"
            ) from exc
        return obj


def declared_commands(path: Sequence[str] | None = None) -> list[DeclaredCommand]:
    """Every command declared by the distributions on ``path`` (default ``sys.path``), in
    the order of their distributions on the path and of their entry points."""
    found: list[DeclaredCommand] = []
    for distribution, entries in _distributions(sys.path if path is None else path):
        plugins = tuple(name for group, name, _ in entries if group == _PLUGIN_GROUP)
        found.extend(
            DeclaredCommand(name, value, distribution, plugins)
            for group, name, value in entries
            if group == COMMAND_GROUP
        )
    return found


Entries = list[tuple[str, str, str]]  # (group, name, value)


def _distributions(path: Sequence[str]) -> Iterator[tuple[str, Entries]]:
    if _needs_importlib_metadata(path):
        yield from _from_importlib_metadata(path)
        return
    seen: set[str] = set()
    for entry in path:
        try:
            with os.scandir(entry or ".") as listing:
                names = sorted(
                    item.name
                    for item in listing
                    if item.name.endswith((".dist-info", ".egg-info")) and item.is_dir()
                )
        except OSError:  # missing or unreadable: importlib.metadata skips it too
            continue
        for name in names:
            normalized = _normalize(name.rpartition(".")[0].partition("-")[0])
            if normalized in seen:  # a name seen earlier on the path shadows this one
                continue
            seen.add(normalized)
            try:
                with open(os.path.join(entry or ".", name, "entry_points.txt"), "rb") as fh:
                    text = fh.read().decode("utf-8", "replace")
            except OSError:
                continue
            entries = _parse(text)
            if entries:
                yield name.rpartition(".")[0].partition("-")[0], entries


def _needs_importlib_metadata(path: Sequence[str]) -> bool:
    """True when a distribution could hide where only ``importlib.metadata`` looks."""
    if any(os.path.isfile(entry) for entry in path if entry):  # a zip file on the path
        return True
    from importlib.machinery import PathFinder

    return any(
        finder is not PathFinder and hasattr(finder, "find_distributions")
        for finder in sys.meta_path
    )


def _from_importlib_metadata(path: Sequence[str]) -> Iterator[tuple[str, Entries]]:
    from importlib.metadata import distributions

    seen: set[str] = set()
    for dist in distributions(path=list(path)):
        name = dist.metadata["Name"] or "unknown"
        if _normalize(name) in seen:
            continue
        seen.add(_normalize(name))
        entries = [(ep.group, ep.name, ep.value) for ep in dist.entry_points]
        entries = [entry for entry in entries if entry[0] in _WANTED]
        if entries:
            yield name, entries


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _parse(text: str) -> Entries:
    """The entries of the groups wanted here, from an ``entry_points.txt`` (the INI-like
    format ``importlib.metadata`` reads: ``[group]`` headers, ``name = value`` lines,
    ``#`` and ``;`` comments)."""
    entries: Entries = []
    group = None
    for raw in _lines(text.splitlines()):
        if raw.startswith("[") and raw.endswith("]"):
            group = raw[1:-1].strip()
            continue
        if group not in _WANTED:
            continue
        name, sep, value = raw.partition("=")
        if sep and name.strip():
            entries.append((group, name.strip(), value.strip()))
    return entries


def _lines(lines: Iterable[str]) -> Iterator[str]:
    for line in lines:
        stripped = line.strip()
        if stripped and not stripped.startswith(("#", ";")):
            yield stripped
