"""Finding and reading agentengine's configuration files: the standard library only.

Shared by :mod:`agentengine.config` (the engine's and plugins' settings) and by commands that
must start fast without pydantic (``agentengine check``), so it imports nothing heavy.

Where configuration is looked up (:func:`find_config`; the first that exists wins):

1. an explicit path, else the path in ``AGENTENGINE_CONFIG`` (it must exist);
2. ``agentengine.toml`` in the working directory;
3. the ``[tool.agentengine]`` table of ``pyproject.toml`` in the working directory.

:func:`find_pyproject` finds a ``pyproject.toml``, in one directory or the nearest one above it
(the migrator's spec lives in the source tree, so it is found from any subdirectory, as ruff
finds its settings). :func:`read_toml` reads a file; its errors name the file and say what it is.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentengine.errors import ConfigError

__all__ = [
    "CONFIG_ENV",
    "CONFIG_FILE",
    "PYPROJECT",
    "ConfigFile",
    "agentengine_table",
    "find_config",
    "find_pyproject",
    "read_toml",
]

#: The environment variable naming the configuration file.
CONFIG_ENV = "AGENTENGINE_CONFIG"
#: The configuration file looked for in the working directory.
CONFIG_FILE = "agentengine.toml"
#: The project file whose ``[tool.agentengine]`` table is the fallback.
PYPROJECT = "pyproject.toml"


@dataclass(frozen=True, slots=True)
class ConfigFile:
    """A configuration found by :func:`find_config`: its tables and how to name it."""

    path: Path
    tables: dict[str, Any]
    #: The file, and for ``pyproject.toml`` the table, as error messages name it.
    source: str


def read_toml(path: Path, *, what: str = "configuration file") -> dict[str, Any]:
    """The TOML document at ``path``.

    Raises ``ConfigError`` naming ``what`` the file is and its path, and why it could not be
    read (``cannot read configuration file x.toml: Permission denied``) or parsed.
    """
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{what} {path} is not valid TOML: {exc}") from None


def agentengine_table(document: Mapping[str, Any], *keys: str) -> Any:
    """``[tool.agentengine]`` of a ``pyproject.toml`` document, or the table ``keys`` below
    it (``agentengine_table(doc, "migrate")`` is ``[tool.agentengine.migrate]``); None when
    absent. Values are returned as they are: the caller checks that a table is a table."""
    value: Any = document.get("tool")
    for key in ("agentengine", *keys):
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def find_pyproject(start: Path, *, search_parents: bool = False) -> Path | None:
    """``pyproject.toml`` in ``start``, or with ``search_parents`` the nearest one at or above
    it (``start`` resolved first); None when there is none."""
    directories = [start]
    if search_parents:
        start = start.resolve()
        directories = [start, *start.parents]
    for directory in directories:
        candidate = directory / PYPROJECT
        if candidate.is_file():
            return candidate
    return None


def find_config(
    path: str | os.PathLike[str] | None = None,
    *,
    cwd: Path,
    environ: Mapping[str, str],
) -> ConfigFile | None:
    """The configuration file, looked up as the module docs say; None when there is none.

    A ``pyproject.toml`` without a ``[tool.agentengine]`` table counts as none. Raises
    ``ConfigError`` when the explicit path or ``AGENTENGINE_CONFIG`` names no file, or the
    file found cannot be read.
    """
    explicit = path if path is not None else environ.get(CONFIG_ENV)
    if explicit:
        file = Path(explicit)
        if not file.is_file():
            origin = CONFIG_ENV if path is None else "the config argument"
            raise ConfigError(f"configuration file {file} does not exist (set by {origin})")
        return ConfigFile(file, read_toml(file), str(file))
    file = cwd / CONFIG_FILE
    if file.is_file():
        return ConfigFile(file, read_toml(file), str(file))
    pyproject = find_pyproject(cwd)
    if pyproject is None:
        return None
    section = agentengine_table(read_toml(pyproject))
    if not isinstance(section, dict):
        return None
    return ConfigFile(pyproject, section, f"{pyproject} [tool.agentengine]")
