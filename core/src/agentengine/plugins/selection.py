"""Which plugins are loaded: the ``[plugins]`` table and its environment overrides.

Kept apart from ``loading`` (which imports pluggy and ``importlib.metadata``) so that the
command line can apply the selection to the commands plugins declare without importing the
plugin machinery.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agentengine.errors import ConfigError

__all__ = ["SELECTION_ENV", "PluginSelection"]

#: ``[plugins]`` key -> the environment variable that overrides it.
SELECTION_ENV = {
    "disable": "AGENTENGINE_DISABLE_PLUGINS",
    "only": "AGENTENGINE_PLUGINS",
    "enable": "AGENTENGINE_ENABLE_PLUGINS",
    "strict": "AGENTENGINE_STRICT_PLUGINS",
}


_FLAGS = {"1": True, "true": True, "yes": True, "on": True}
_FLAGS.update({"": False, "0": False, "false": False, "no": False, "off": False})


def _name_list(value: Any, key: str, source: str) -> frozenset[str]:
    if isinstance(value, str):  # "a,b" (an environment variable, or written so in the file)
        return frozenset(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return frozenset(v.strip() for v in value if v.strip())
    raise ConfigError(
        f'{source}: [plugins] {key} must be a list of plugin names (such as ["demo"]) or a '
        f"comma-separated string, got {value!r}"
    )


@dataclass(frozen=True)
class PluginSelection:
    """Which plugins a factory loads: the ``[plugins]`` table with its environment overrides.

    ``disable``: entry points (and built-ins) never loaded, whatever the other keys say.
    ``only``: when not None, the only entry points loaded (an allow-list).
    ``enable``: opt-in entry points (``opt_in = True``, such as ``demo``) to load as well.
    ``strict``: a plugin that fails to load raises ``PluginLoadError`` instead of being recorded.
    """

    disable: frozenset[str] = frozenset()
    only: frozenset[str] | None = None
    enable: frozenset[str] = frozenset()
    strict: bool = False

    @classmethod
    def from_config(
        cls,
        table: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
        *,
        source: str = "configuration",
    ) -> PluginSelection:
        """Read a ``[plugins]`` table (None: absent), then let each environment variable of
        ``SELECTION_ENV`` that is set replace its key. Raises ``ConfigError`` naming ``source``
        and the key for an unknown key or a value of the wrong kind."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = dict(table or {})
        unknown = sorted(set(values) - set(SELECTION_ENV))
        if unknown:
            raise ConfigError(
                f"{source}: unknown key(s) {', '.join(unknown)} in [plugins]; known keys: "
                + ", ".join(sorted(SELECTION_ENV))
            )
        where = dict.fromkeys(SELECTION_ENV, source)
        for key, variable in SELECTION_ENV.items():
            if variable in env:
                values[key], where[key] = env[variable], variable
        strict = values.get("strict", False)
        if isinstance(strict, str):
            strict = _FLAGS.get(strict.strip().lower(), strict)
        if not isinstance(strict, bool):
            raise ConfigError(
                f"{where['strict']}: [plugins] strict must be true or false (1/0, yes/no, on/off "
                f"in the environment), got {strict!r}"
            )
        only = values.get("only")
        return cls(
            disable=_name_list(values.get("disable", ()), "disable", where["disable"]),
            only=None if only is None else _name_list(only, "only", where["only"]),
            enable=_name_list(values.get("enable", ()), "enable", where["enable"]),
            strict=strict,
        )

    def skip_reason(self, name: str, *, opt_in: bool = False) -> str | None:
        """Why entry point ``name`` is not loaded, or None when it is."""
        if name in self.disable:
            return (
                f"disabled ([plugins] disable or {SELECTION_ENV['disable']}); remove {name!r} "
                "from it to load it"
            )
        if self.only is not None and name not in self.only:
            return f"not in the allow-list ([plugins] only or {SELECTION_ENV['only']})"
        if opt_in and name not in self.enable and (self.only is None or name not in self.only):
            return (
                f'opt-in; load it with [plugins] enable = ["{name}"] or '
                f"{SELECTION_ENV['enable']}={name}"
            )
        return None
