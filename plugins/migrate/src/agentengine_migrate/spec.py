"""The migration spec: which module paths and names are deprecated, and what replaces them.

A spec is plain data, read from ``[tool.agentengine.migrate]`` in ``pyproject.toml`` or from a
TOML file given with ``--spec``::

    presets = ["agentengine-legacy"]      # built-in tables to start from (default)
    allow = ["src/compat/shim.py"]        # files allowed to use deprecated paths
    exclude = ["generated/**"]            # files not scanned at all
    select = ["AEM0", "AEM1"]             # codes reported (prefixes; default: all)
    ignore = ["AEM107"]                   # codes not reported

    [modules."old.engine"]
    replacement = "new.engine"            # names not listed below keep their name there
    message = "see docs/upgrade.md"       # appended to every finding (optional)
    names = { Engine = "new.engine:UserEngine", make = "new.factory:make_engine" }

    [calls]
    "old.engine:Engine" = "new.engine:UserEngine.create_from_legacy"

A user's table is validated with pydantic (imported only then, to keep ``check`` fast on a
few files); the built-in presets are the same data shape and are validated by the tests.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from agentengine import ConfigError
from agentengine.config_files import agentengine_table, find_pyproject, read_toml

from agentengine_migrate.errors import SpecError

__all__ = [
    "CallRewrite",
    "MigrationSpec",
    "ModuleRule",
    "SpecError",
    "Target",
    "build_spec",
    "load_spec",
]


@dataclass(frozen=True, slots=True)
class Target:
    """A replacement: ``module`` and, for a name, the ``name`` in it (None: the module itself)."""

    module: str
    name: str | None = None

    def __str__(self) -> str:
        return self.module if self.name is None else f"{self.module}:{self.name}"

    @property
    def dotted(self) -> str:
        """``module.name`` (what a ``mock.patch`` target spells)."""
        return self.module if self.name is None else f"{self.module}.{self.name}"

    @property
    def import_statement(self) -> str:
        """The import a person would write for this replacement."""
        if self.name is None:
            return f"import {self.module}"
        return f"from {self.module} import {self.name}"


@dataclass(frozen=True, slots=True)
class ModuleRule:
    """One deprecated module and where its names went."""

    module: str
    replacement: str | None = None
    names: Mapping[str, Target] = field(default_factory=dict)
    message: str | None = None

    def target_for(self, name: str) -> Target | None:
        """Where ``name`` of this module went, or None when nobody said."""
        found = self.names.get(name)
        if found is not None:
            return found
        if self.replacement is not None:
            return Target(self.replacement, name)
        return None

    def describe_replacement(self) -> str:
        """A short human description of what replaces the module as a whole."""
        if self.replacement is not None:
            return f"`{self.replacement}`"
        modules = sorted({t.module for t in self.names.values()})
        return ", ".join(f"`{m}`" for m in modules) or "nothing known"


@dataclass(frozen=True, slots=True)
class CallRewrite:
    """A call of a deprecated name rewritten as a call of an attribute of its replacement.

    ``ExecutionEngine(r, b, c)`` -> ``ExecutionEngine.create_from_legacy(r, b, c)``, where the
    local name ``ExecutionEngine`` now binds ``UserExecutionEngine`` (local names are kept).
    """

    module: str
    name: str
    attribute: str


@dataclass(frozen=True)
class MigrationSpec:
    """The resolved spec: presets merged with the user's own table."""

    modules: Mapping[str, ModuleRule]
    calls: Mapping[tuple[str, str], CallRewrite] = field(default_factory=dict)
    allow: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    presets: tuple[str, ...] = ()
    source: str = "<built-in>"
    root: Path = field(default_factory=Path.cwd)
    select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()

    @cached_property
    def codes(self) -> frozenset[str]:
        """The codes reported: ``select`` (default all) less ``ignore``."""
        from agentengine_migrate.findings import select_codes

        return select_codes(self.select, self.ignore)

    @cached_property
    def mention_pattern(self) -> re.Pattern[str]:
        """A deprecated dotted path written inside text (a module, maybe ``.Name`` or ``:Name``)."""
        modules = "|".join(re.escape(m) for m in sorted(self.modules, key=len, reverse=True))
        name = r"[A-Za-z_]\w*"
        return re.compile(rf"(?<![\w.])(?:{modules})(?:\.{name})*(?::{name}(?:\.{name})*)?(?!\w)")

    @cached_property
    def module_bytes(self) -> frozenset[bytes]:
        """The deprecated module paths, as bytes (the prefilter looks for them in text)."""
        return frozenset(m.encode() for m in self.modules)

    def deprecated_module_of(self, reference: str) -> str | None:
        """The deprecated module a dotted reference (``a.b``, ``a.b.C``, ``a.b:C``) lies in.

        The longest one: with ``a.b`` and ``a.b.c`` both deprecated, ``a.b.c.X`` is in ``a.b.c``.
        """
        split = self.split_dotted(reference.replace(":", "."))
        return None if split is None else split[0].module

    def rule_for(self, module: str) -> ModuleRule | None:
        """The rule of ``module`` or of the nearest deprecated package containing it."""
        rules = self.modules
        found = rules.get(module)
        if found is not None:
            return found
        while "." in module:
            module = module.rpartition(".")[0]
            found = rules.get(module)
            if found is not None:
                return found
        return None

    def split_dotted(self, dotted: str) -> tuple[ModuleRule, str] | None:
        """Split ``a.b.C.meth`` into the longest deprecated module and the rest (``C.meth``)."""
        parts = dotted.split(".")
        for cut in range(len(parts), 0, -1):
            found = self.modules.get(".".join(parts[:cut]))
            if found is not None:
                return found, ".".join(parts[cut:])
        return None

    def replace_dotted(self, dotted: str) -> str | None:
        """The replacement of a dotted reference (a ``mock.patch`` target), or None."""
        split = self.split_dotted(dotted)
        if split is None:
            return None
        rule, rest = split
        if not rest:
            return rule.replacement
        head, _, tail = rest.partition(".")
        target = rule.target_for(head)
        if target is None:
            return None
        return f"{target.dotted}.{tail}" if tail else target.dotted

    @cached_property
    def _segments(self) -> tuple[str, ...]:
        segments = sorted({m.rpartition(".")[2] for m in self.modules}, key=len)
        kept: list[str] = []
        for seg in segments:
            if not any(k in seg for k in kept):
                kept.append(seg)
        return tuple(kept)

    def last_segment_names(self) -> tuple[str, ...]:
        """``last_segments`` as text (to test file paths)."""
        return self._segments

    def last_segments(self) -> tuple[bytes, ...]:
        """The byte strings a file must contain to possibly use a deprecated path.

        Each deprecated module's last segment; a segment containing a shorter one is dropped,
        since finding the shorter one already makes the file a candidate.
        """
        return self._segment_bytes

    @cached_property
    def _segment_bytes(self) -> tuple[bytes, ...]:
        return tuple(s.encode() for s in self._segments)


def _target(raw: str) -> Target:
    module, sep, name = raw.partition(":")
    return Target(module, name if sep else None)


def _merge_table(into: dict[str, Any], table: Mapping[str, Any]) -> None:
    for module, rule in table.get("modules", {}).items():
        merged = dict(into["modules"].get(module, {}))
        names = dict(merged.get("names", {}))
        names.update(rule.get("names", {}))
        merged.update(rule)
        merged["names"] = names
        into["modules"][module] = merged
    into["calls"].update(table.get("calls", {}))
    into["allow"].extend(table.get("allow", ()))
    into["exclude"].extend(table.get("exclude", ()))
    into["select"].extend(table.get("select", ()))
    into["ignore"].extend(table.get("ignore", ()))


def build_spec(
    table: Mapping[str, Any],
    *,
    presets: Iterable[str] | None = None,
    source: str = "<built-in>",
    root: Path | None = None,
) -> MigrationSpec:
    """Build a spec from an already validated table, on top of its presets.

    ``presets`` overrides the table's own ``presets`` key (the ``--preset`` option).
    """
    from agentengine_migrate.presets import PRESETS

    chosen = tuple(presets if presets is not None else table.get("presets", DEFAULT_PRESETS))
    merged: dict[str, Any] = {
        "modules": {},
        "calls": {},
        "allow": [],
        "exclude": [],
        "select": [],
        "ignore": [],
    }
    for name in chosen:
        if name not in PRESETS:
            known = ", ".join(sorted(PRESETS))
            raise SpecError(f"presets: unknown preset {name!r}; the built-in presets are {known}")
        _merge_table(merged, PRESETS[name])
    _merge_table(merged, table)
    modules = {
        module: ModuleRule(
            module=module,
            replacement=rule.get("replacement"),
            names={name: _target(t) for name, t in rule.get("names", {}).items()},
            message=rule.get("message"),
        )
        for module, rule in merged["modules"].items()
    }
    calls: dict[tuple[str, str], CallRewrite] = {}
    for old, new in merged["calls"].items():
        module, _, name = old.partition(":")
        attribute = new.rpartition(".")[2]
        calls[(module, name)] = CallRewrite(module, name, attribute)
    spec = MigrationSpec(
        modules=modules,
        calls=calls,
        allow=tuple(merged["allow"]),
        exclude=tuple(merged["exclude"]),
        presets=chosen,
        source=source,
        root=root or Path.cwd(),
        select=tuple(merged["select"]),
        ignore=tuple(merged["ignore"]),
    )
    try:
        spec.codes  # noqa: B018 - validates select/ignore now, not in the middle of a scan
    except ValueError as exc:
        raise SpecError(f"select/ignore: {exc}") from None
    return spec


DEFAULT_PRESETS = ("agentengine-legacy",)


def _read(path: Path, what: str) -> dict[str, Any]:
    try:
        return read_toml(path, what=what)
    except ConfigError as exc:
        raise SpecError(str(exc)) from None


def load_spec(
    spec_file: Path | None = None,
    *,
    presets: Iterable[str] | None = None,
    cwd: Path | None = None,
) -> MigrationSpec:
    """Load the spec: ``spec_file`` if given, else ``[tool.agentengine.migrate]`` of the nearest
    ``pyproject.toml``, else the default preset.

    ``spec_file`` may hold the keys at top level or under ``[tool.agentengine.migrate]``.
    Raises ``SpecError`` naming the offending key.
    """
    cwd = cwd or Path.cwd()
    prefix = "tool.agentengine.migrate"
    if spec_file is not None:
        data = _read(spec_file, "the migration spec")
        nested = agentengine_table(data, "migrate")
        table, prefix = (nested, prefix) if isinstance(nested, dict) else (data, "")
        source, root = str(spec_file), spec_file.resolve().parent
    else:
        pyproject = find_pyproject(cwd, search_parents=True)
        if pyproject is None:
            return build_spec({}, presets=presets, root=cwd.resolve())
        table = agentengine_table(_read(pyproject, "configuration file"), "migrate")
        source, root = str(pyproject), pyproject.parent
        if table is None:
            return build_spec({}, presets=presets, source=source, root=root)
    from agentengine_migrate.spec_validation import validate_table

    validated = validate_table(table, prefix=prefix, source=source)
    return build_spec(validated, presets=presets, source=source, root=root)
