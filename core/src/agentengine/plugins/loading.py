"""Plugin discovery and registration.

Plugins come from three places, in this order: the built-ins, the ``plugins=[...]`` given to
the factory, and the entry points of group ``agentengine`` (each loaded in its own try/except:
one that fails to import or register is recorded and the others keep working).

Which entry points load is configured by the ``[plugins]`` table of the configuration file
(see ``PluginSelection``), each key overridden by its environment variable when that is set:

=================  ================================  ==========================================
``[plugins]`` key  environment variable              meaning
=================  ================================  ==========================================
``disable``        ``AGENTENGINE_DISABLE_PLUGINS``   skip these entry points (and built-ins of
                                                     that name); wins over the other keys
``only``           ``AGENTENGINE_PLUGINS``           load only these entry points (allow-list)
``enable``         ``AGENTENGINE_ENABLE_PLUGINS``    also load these opt-in entry points
``strict``         ``AGENTENGINE_STRICT_PLUGINS``    fail fast with ``PluginLoadError``
=================  ================================  ==========================================

An entry point whose object has ``opt_in = True`` (the core's ``demo`` plugin) is loaded only
when asked for by name: in ``enable``, in ``only``, or by the factory's ``enable_plugins``
(``agentengine demo``, ``agentengine run`` and ``agentengine serve --dev`` ask for ``demo``).
Entry points found but not loaded are listed in ``PluginSet.skipped`` with the reason.
"""

from __future__ import annotations

import inspect
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy

from agentengine.errors import PluginHookError, PluginLoadError
from agentengine.plugins.hooks import HOOK_PREFIX, PROJECT_NAME, AgentEngineHookSpecs
from agentengine.plugins.selection import SELECTION_ENV, PluginSelection

__all__ = [
    "ENTRY_POINT_GROUP",
    "PluginHookError",
    "PluginInfo",
    "SELECTION_ENV",
    "PluginSelection",
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
    #: Why an entry point found was not loaded (disabled, not allowed, opt-in); None if loaded.
    skipped: str | None = None
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
            "skipped": self.skipped,
        }


def load_plugin(spec: str) -> Any:
    """The plugin object named by ``spec``, ``MODULE`` or ``MODULE:ATTRIBUTE`` as in an entry
    point (``agentengine_weather:plugin``); a class is instantiated. Raises ``PluginLoadError``
    naming the spec and the cause when it cannot be imported. ``agentengine serve --plugin``
    and ``agentengine worker --plugin`` take such specs."""
    import importlib

    module_name, _, attr = spec.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in filter(None, attr.split(".")):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise PluginLoadError(
            f"cannot load {spec!r}: {exc}; pass MODULE or MODULE:ATTRIBUTE of a plugin object "
            "importable from the current environment"
        ) from None
    return obj() if isinstance(obj, type) else obj


def plugin_name_of(plugin: Any) -> str:
    """A readable name for a plugin object: its ``name`` attribute, module or class name."""
    explicit = getattr(plugin, "name", None)
    if isinstance(explicit, str) and explicit:
        return explicit
    if inspect.ismodule(plugin):
        return plugin.__name__
    return type(plugin).__qualname__


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
        #: Plugins found but not loaded, each with its ``skipped`` reason.
        self.skipped: list[PluginInfo] = []
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
    selection: PluginSelection | None = None,
    enable: Iterable[str] = (),
) -> PluginSet:
    """Discover and register plugins (see the module docs). Entry points are scanned once.

    ``selection`` is the ``[plugins]`` configuration (by default: the environment variables
    alone, read from ``environ``); ``enable`` names opt-in entry points to load besides those
    it enables; ``strict``, when not None, wins over the selection's."""
    chosen = PluginSelection.from_config(None, environ) if selection is None else selection
    enabled = chosen.enable | frozenset(enable)
    if enabled != chosen.enable:
        chosen = PluginSelection(chosen.disable, chosen.only, enabled, chosen.strict)
    plugins = PluginSet(chosen.strict if strict is None else strict)
    for name, obj in builtins:
        if name in chosen.disable:
            reason = chosen.skip_reason(name)
            plugins.skipped.append(PluginInfo(name=name, source="builtin", skipped=reason))
            continue
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
        dist_name, version = _distribution_of(ep)
        info = PluginInfo(
            name=ep.name,
            source="entrypoint",
            distribution=dist_name,
            version=version,
            entry_point=f"{ep.name} = {ep.value}",
        )
        reason = chosen.skip_reason(ep.name)
        if reason is not None:  # decided by name alone: not even imported
            info.skipped = reason
            plugins.skipped.append(info)
            continue
        try:
            obj = ep.load()
        except Exception as exc:
            plugins._fail(info, f"failed to import {ep.value}: {_short_error(exc)}", exc)
            continue
        reason = chosen.skip_reason(ep.name, opt_in=getattr(obj, "opt_in", False) is True)
        if reason is not None:
            info.skipped = reason
            plugins.skipped.append(info)
            continue
        plugins.add(obj, info)
    return plugins
