"""Plugin discovery and registration.

Plugins come from three places, in this order: the built-ins, the ``plugins=[...]`` given to
the factory, and the entry points of group ``agentengine`` (each loaded in its own try/except:
one that fails to import or register is recorded and the others keep working). Environment:

``AGENTENGINE_PLUGINS=a,b``          load only these entry points (an allow-list);
``AGENTENGINE_DISABLE_PLUGINS=a,b``  skip these entry points (and built-ins of that name);
``AGENTENGINE_STRICT_PLUGINS=1``     fail fast with ``PluginLoadError`` (``strict_plugins=True``).
"""

from __future__ import annotations

import inspect
import os
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy

from agentengine.errors import PluginHookError, PluginLoadError
from agentengine.plugins.hooks import HOOK_PREFIX, PROJECT_NAME, AgentEngineHookSpecs

__all__ = [
    "ENTRY_POINT_GROUP",
    "PluginHookError",
    "PluginInfo",
    "PluginSet",
    "load_plugins",
    "plugin_name_of",
]

ENTRY_POINT_GROUP = "agentengine"


@dataclass
class PluginInfo:
    """What is known of one plugin: where it came from, what it contributes, what went wrong."""

    name: str
    source: str  # "builtin", "explicit" or "entrypoint"
    distribution: str | None = None
    version: str | None = None
    entry_point: str | None = None
    hooks: list[str] = field(default_factory=list)
    agents: list[str] = field(default_factory=list)
    tools: list[str] = field(default_factory=list)
    error: str | None = None
    aliases: list[str] = field(default_factory=list)
    plugin: Any = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """False when the plugin failed to load or register."""
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``agentengine plugins --json``)."""
        return {
            "name": self.name,
            "source": self.source,
            "distribution": self.distribution,
            "version": self.version,
            "entry_point": self.entry_point,
            "hooks": sorted(self.hooks),
            "agents": sorted(self.agents),
            "tools": sorted(self.tools),
            "error": self.error,
            "aliases": self.aliases,
        }


def plugin_name_of(plugin: Any) -> str:
    """A readable name for a plugin object: its ``name`` attribute, module or class name."""
    explicit = getattr(plugin, "name", None)
    if isinstance(explicit, str) and explicit:
        return explicit
    if inspect.ismodule(plugin):
        return plugin.__name__
    return type(plugin).__qualname__


def _env_list(environ: Mapping[str, str], key: str) -> set[str] | None:
    raw = environ.get(key)
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


def _env_flag(environ: Mapping[str, str], key: str) -> bool:
    return environ.get(key, "").strip().lower() in {"1", "true", "yes", "on"}


def _short_error(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class PluginSet:
    """The plugins of one factory: a pluggy manager plus what was recorded about each."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.manager = pluggy.PluginManager(PROJECT_NAME)
        self.manager.add_hookspecs(AgentEngineHookSpecs)
        self.infos: list[PluginInfo] = []
        self._by_object: dict[int, PluginInfo] = {}

    # -- registration ---------------------------------------------------------------------

    def add(self, plugin: Any, info: PluginInfo) -> None:
        """Register ``plugin``; record (or, in strict mode, raise) any problem."""
        if inspect.isclass(plugin):
            try:
                plugin = plugin()
            except Exception as exc:
                self._fail(info, f"could not instantiate plugin class: {_short_error(exc)}", exc)
                return
        same = self._by_object.get(id(plugin))
        if same is not None:
            # Two entry points resolving to one object: register once, remember the alias.
            same.aliases.append(info.entry_point or info.name)
            return
        info.plugin = plugin
        try:
            unknown = [
                attr
                for attr in dir(plugin)
                if attr.startswith(HOOK_PREFIX)
                and callable(getattr(plugin, attr, None))
                and not hasattr(AgentEngineHookSpecs, attr)
            ]
            if unknown:
                raise pluggy.PluginValidationError(
                    plugin,
                    f"unknown hook(s) {', '.join(unknown)}; known hooks: "
                    + ", ".join(sorted(_hook_names())),
                )
            name = self._unique_name(info.name)
            info.name = name
            self.manager.register(plugin, name=name)
        except Exception as exc:
            self._fail(info, f"could not register: {_short_error(exc)}", exc)
            return
        info.hooks = sorted(caller.name for caller in (self.manager.get_hookcallers(plugin) or []))
        self._by_object[id(plugin)] = info
        self.infos.append(info)

    def _unique_name(self, name: str) -> str:
        candidate, n = name, 1
        while self.manager.has_plugin(candidate):
            n += 1
            candidate = f"{name}#{n}"
        return candidate

    def _fail(self, info: PluginInfo, message: str, exc: BaseException | None) -> None:
        info.error = message
        self.infos.append(info)
        if self.strict:
            where = info.entry_point or info.name
            detail = ""
            if exc is not None:
                detail = "\n" + "".join(traceback.format_exception_only(type(exc), exc)).strip()
            raise PluginLoadError(
                f"plugin {where!r} ({info.distribution or 'no distribution'}) failed: "
                f"{message}{detail}"
            ) from exc

    def record_failure(self, plugin: Any, message: str, exc: BaseException | None) -> None:
        """A registered plugin failed later (in a hook): record it, unregister it."""
        info = self._by_object.get(id(plugin))
        if info is None:
            return
        info.error = message
        if self.manager.is_registered(plugin):
            self.manager.unregister(plugin)
        if self.strict:
            raise PluginLoadError(f"plugin {info.name!r} failed: {message}") from exc

    # -- calling hooks one implementation at a time -----------------------------------------

    def implementations(self, hook: str) -> list[tuple[str, Any, Callable[..., Any]]]:
        """(plugin name, plugin object, function) for each implementation of ``hook``,
        in registration order (built-ins first, then explicit plugins, then entry points)."""
        caller = getattr(self.manager.hook, hook)
        return [(i.plugin_name, i.plugin, i.function) for i in caller.get_hookimpls()]

    def call_each(
        self,
        hook: str,
        kwargs: Mapping[str, Any],
        before: Callable[[str], None] | None = None,
        *,
        isolate: bool = True,
        first: bool = False,
    ) -> list[tuple[str, Any]]:
        """Call each implementation of ``hook`` with the arguments it asks for.

        With ``first`` (``agentengine_event_sink``), calling stops at the first implementation
        that returns something other than None, which is then the only result: pluggy's
        ``firstresult``, but in registration order and with the per-plugin isolation below.

        With ``isolate`` (the factory-build hooks), a raising implementation is recorded against
        its plugin and unregistered while the others go on. Without it (per-engine hooks, where
        a failure may be transient and a missing policy layer must not pass unnoticed), the
        error propagates as ``PluginHookError`` naming the plugin, and nothing is unregistered.

        Registration order (built-ins first): that is the order of middleware, outermost first.
        """
        results: list[tuple[str, Any]] = []
        caller = getattr(self.manager.hook, hook)
        for impl in caller.get_hookimpls():
            if before is not None:
                before(impl.plugin_name)
            try:
                value = impl.function(*(kwargs[arg] for arg in impl.argnames))
            except Exception as exc:
                if not isolate:
                    raise PluginHookError(
                        f"plugin {impl.plugin_name!r} failed in {hook}: {_short_error(exc)}"
                    ) from exc
                self.record_failure(impl.plugin, f"{hook} raised {_short_error(exc)}", exc)
                continue
            if first and value is None:
                continue
            results.append((impl.plugin_name, value))
            if first:
                break
        return results

    def info(self, name: str) -> PluginInfo | None:
        """The record of the plugin registered as ``name``."""
        return next((i for i in self.infos if i.name == name), None)

    @property
    def errors(self) -> list[PluginInfo]:
        """Plugins that failed to load or register."""
        return [i for i in self.infos if i.error is not None]


def _hook_names() -> list[str]:
    return [n for n in dir(AgentEngineHookSpecs) if n.startswith(HOOK_PREFIX)]


def _distribution_of(ep: EntryPoint) -> tuple[str | None, str | None]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return None, None
    return dist.metadata["Name"], dist.version


def load_plugins(
    *,
    builtins: Iterable[tuple[str, Any]] = (),
    explicit: Sequence[Any] = (),
    load_entrypoints: bool = True,
    strict: bool | None = None,
    environ: Mapping[str, str] | None = None,
) -> PluginSet:
    """Discover and register plugins (see the module docs). Entry points are scanned once."""
    env = os.environ if environ is None else environ
    strict_mode = _env_flag(env, "AGENTENGINE_STRICT_PLUGINS") if strict is None else strict
    disabled = _env_list(env, "AGENTENGINE_DISABLE_PLUGINS") or set()
    allowed = _env_list(env, "AGENTENGINE_PLUGINS")
    plugins = PluginSet(strict_mode)
    for name, obj in builtins:
        if name not in disabled:
            plugins.add(obj, PluginInfo(name=name, source="builtin"))
    for obj in explicit:
        plugins.add(obj, PluginInfo(name=plugin_name_of(obj), source="explicit"))
    if not load_entrypoints:
        return plugins
    seen: set[tuple[str, str]] = set()
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if (ep.name, ep.value) in seen:  # the same distribution visible twice on sys.path
            continue
        seen.add((ep.name, ep.value))
        if ep.name in disabled or (allowed is not None and ep.name not in allowed):
            continue
        dist_name, version = _distribution_of(ep)
        info = PluginInfo(
            name=ep.name,
            source="entrypoint",
            distribution=dist_name,
            version=version,
            entry_point=f"{ep.name} = {ep.value}",
        )
        try:
            obj = ep.load()
        except Exception as exc:
            plugins._fail(info, f"failed to import {ep.value}: {_short_error(exc)}", exc)
            continue
        plugins.add(obj, info)
    return plugins
