"""The plugin hooks: what a plugin may implement (each name starts with ``agentengine_``).

Hooks are plain synchronous pluggy hooks, called when a factory is built or an engine is
created, never per event or per tool call: the per-run work of a plugin lives in the
*extensions* it returns (see ``agentengine.plugins.extensions``), which the engine composes once.

A plugin implements any subset, with any subset of each hook's arguments::

    from agentengine import hookimpl

    class MyPlugin:
        @hookimpl
        def agentengine_register_tools(self, registry):
            registry.add(my_tool)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from agentengine.config import EngineSettings, Settings
    from agentengine.context import UserExecutionContext
    from agentengine.definitions.agents import AgentRegistry
    from agentengine.definitions.resources import ResourceRegistry
    from agentengine.definitions.tools import ToolRegistry
    from agentengine.sinks.protocol import EventSink

__all__ = ["HOOK_PREFIX", "PROJECT_NAME", "AgentEngineHookSpecs", "hookimpl", "hookspec"]

PROJECT_NAME = "agentengine"
HOOK_PREFIX = "agentengine_"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
#: Marks a plugin's hook implementation: ``@hookimpl def agentengine_register_tools(...)``.
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


class AgentEngineHookSpecs:
    """The hook specifications. Argument names are part of the contract."""

    @hookspec
    def agentengine_configure(self, settings: Settings) -> None:
        """Read this plugin's table of the configuration (``settings.section("name")``).

        Called once when a factory is built, before any registration hook. Raise
        ``ConfigError`` naming the key when the table is invalid.
        """

    @hookspec
    def agentengine_register_agents(self, registry: AgentRegistry) -> None:
        """Add agents: ``registry.add(my_agent)``. Duplicate names are refused."""

    @hookspec
    def agentengine_register_tools(self, registry: ToolRegistry) -> None:
        """Add tools: ``registry.add(my_tool)``. Duplicate names are refused."""

    @hookspec
    def agentengine_engine_extensions(
        self,
        context: UserExecutionContext,
        engine: Any,  # the UserExecutionEngine being made: the runtime sits above this layer
    ) -> Any:
        """Return an extension object (or a list of them, or None) for one user's engine.

        ``engine`` is the ``UserExecutionEngine`` being made (type it as such in an
        implementation): its ``user_id``, ``context`` and ``resources`` are set; it runs nothing
        until every extension is in place.

        Called once per engine, when the factory creates it. See ``agentengine.plugins.extensions``
        for the optional methods an extension may have.
        """

    @hookspec
    def agentengine_register_resources(self, registry: ResourceRegistry) -> None:
        """Declare request-scoped resources: ``registry.add("db", open_db)``.

        ``open_db`` returns an async context manager (or is an async generator function, or
        takes the ``RunContext``); a run opens it on first ``await run.scope["db"]`` and the
        built-in ``request_scope`` plugin closes it when the run ends. See
        ``agentengine.request_scope``.
        """

    @hookspec
    def agentengine_event_sink(self, settings: Settings) -> EventSink | None:
        """Return the event sink (transport) for the factory, or None to leave it to others.

        The factory asks the plugins one at a time, in registration order (built-ins, then
        explicit plugins, then entry points), and the first one returning a sink wins: the
        plugins after it are not asked. A plugin whose hook raises is recorded as failed (see
        ``agentengine plugins``) and skipped, and the next one is asked. With no sink, the
        in-memory sink is used.

        Not declared ``firstresult``: pluggy's own first-result call would ask the last
        registered plugin first and let one raising plugin fail the whole factory.
        """

    @hookspec
    def agentengine_run_registry(
        self, settings: Settings, engine_settings: EngineSettings, events: EventSink
    ) -> Any:  # a RunRegistry or None: the runtime sits above this layer
        """Return the registry of submitted runs (``factory.runs``), or None to leave it to
        others: a ``RunRegistry`` (a subclass, e.g. one keeping the records where every process
        reads them). ``engine_settings`` are the factory's effective ``[engine]`` settings
        (its bounds); ``events`` is the sink the factory chose.

        Asked like ``agentengine_event_sink``: in registration order, the first one returning a
        registry wins, a raising one is recorded as failed and skipped. With none, the
        in-memory ``RunRegistry`` is used.
        """

    @hookspec
    def agentengine_status(self) -> Sequence[Mapping[str, Any]]:
        """Report the health of what the plugin connects to, for ``agentengine plugins``.

        Return a list of ``{"name": ..., "state": ..., "detail": ...}`` dicts (e.g. one per
        external server); never raise for an unhealthy dependency, report it.
        """
        return ()

    @hookspec
    def agentengine_cli_commands(self) -> Sequence[Any]:
        """Return ``click`` commands to add to the ``agentengine`` command line.

        Called only for ``agentengine --help`` and for a command name no plugin declares:
        commands declared in entry-point group ``agentengine.commands`` are found without
        loading any plugin (see ``agentengine.plugins.commands``), which is faster.
        """
        return ()
