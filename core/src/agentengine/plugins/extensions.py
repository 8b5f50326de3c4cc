"""Extensions: the per-engine, per-run side of a plugin.

A plugin's ``agentengine_engine_extensions`` hook returns objects with any of these optional
methods (duck-typed; ``Extension`` is a convenience base with no-op defaults):

``async start()``
    when the engine is created (in order of registration);
``async close()``
    when the engine is cleaned up (in reverse order), given ``[engine] close_timeout``
    seconds; whatever it raises is logged with the plugin's name, never raised;
``async around_run(run, call_next)``
    middleware around a whole run: ``return await call_next()`` runs the rest of the chain
    and the agent; may inspect ``run``, refuse (raise) or retry;
``async around_tool(run, call, call_next)``
    middleware around one tool call: ``return await call_next(call)``; ``call`` is a
    ``ToolCall`` (tool, tool_call_id, args);
``tools()``
    tools only this user's engine has (e.g. an MCP server's, with this user's session);
``async resolve_tool(name)``
    a tool looked up by name at call time, or None;
``async list_tools()``
    the tools ``resolve_tool`` can find, listed (``run.list_tools()``: for agents that offer
    tools to a model; may open connections, as an MCP session does);
``on_event(event)``
    an observer of every event of the engine's runs. One that raises (anything, a
    ``CancelledError`` included) is logged with its plugin's name and skipped: observers never
    break a run or each other.

Whatever the other methods raise (``SystemExit`` and ``KeyboardInterrupt`` included) fails at
most that tool call, run or engine creation, never the process; see "Failure semantics" in
docs/architecture.md.

The whole lifecycle of one engine's extensions lives here, in ``ExtensionStack``: the list of
(plugin name, extension), starting them with rollback, composing their methods into call chains
(``Chains``) that the engine reads once at creation (a run pays no hook lookup), and closing them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from agentengine.errors import AgentEngineError, describe_error

if TYPE_CHECKING:
    from agentengine.definitions.run import RunContext
    from agentengine.definitions.tools import Tool
    from agentengine.events import BaseEvent
    from agentengine.plugins.loading import PluginSet

    RunChain = Callable[[RunContext], Awaitable[Any]]
    ToolChain = Callable[[RunContext, "ToolCall"], Awaitable[Any]]

__all__ = [
    "Chains",
    "Extension",
    "ExtensionStack",
    "ToolCall",
    "contained",
    "implements",
]

_log = structlog.get_logger("agentengine.plugins.extensions")


def cancelling(run: RunContext | None = None) -> bool:
    """True when the ``CancelledError`` being handled is a real cancellation: the engine asked
    to cancel ``run``, or the current task was cancelled. User code raising ``CancelledError``
    on its own (or from a future someone else cancelled) is a failure, not a cancellation."""
    if run is not None and run.cancel_requested:
        return True
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


@dataclass(slots=True)
class ToolCall:
    """One tool call as it passes through ``around_tool`` middleware."""

    tool: Tool
    tool_call_id: str
    args: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The tool's name."""
        return self.tool.name


class Extension:
    """Optional base class for extensions; override what you need."""

    #: The plugin's name, set by the engine (used in log lines about this extension).
    plugin_name: str | None = None

    async def start(self) -> None:
        """Called when the engine is created."""

    async def close(self) -> None:
        """Called when the engine is cleaned up."""

    async def around_run(self, run: RunContext, call_next: Callable[[], Awaitable[Any]]) -> Any:
        """Wrap a run."""
        return await call_next()

    async def around_tool(
        self,
        run: RunContext,
        call: ToolCall,
        call_next: Callable[[ToolCall], Awaitable[Any]],
    ) -> Any:
        """Wrap a tool call."""
        return await call_next(call)

    def tools(self) -> Iterable[Tool]:
        """Tools for this engine only."""
        return ()

    async def resolve_tool(self, name: str) -> Tool | None:
        """A tool looked up at call time."""
        return None

    async def list_tools(self) -> Iterable[Tool]:
        """The tools ``resolve_tool`` can find, listed."""
        return ()

    def on_event(self, event: BaseEvent) -> None:
        """Observe an event."""


def implements(ext: Any, method: str) -> bool:
    """True when ``ext`` really provides ``method`` (not Extension's no-op default)."""
    impl = getattr(type(ext), method, None)
    if impl is None:
        return callable(getattr(ext, method, None))
    return impl is not getattr(Extension, method, None)


async def contained(call: Callable[[], Awaitable[Any]]) -> BaseException | None:
    """Await ``call()`` and return what it raised (None if nothing): for user code run in a
    task of its own, since asyncio re-raises ``SystemExit`` and ``KeyboardInterrupt`` from a
    task out of the event loop."""
    try:
        await call()
    except BaseException as exc:  # handed to the caller, who reports it
        return exc
    return None


def _wrap_run(
    around: Callable[[RunContext, Callable[[], Awaitable[Any]]], Awaitable[Any]], inner: RunChain
) -> RunChain:
    async def layer(run: RunContext) -> Any:
        return await around(run, lambda: inner(run))

    return layer


def _wrap_tool(
    around: Callable[[RunContext, ToolCall, Callable[[ToolCall], Awaitable[Any]]], Awaitable[Any]],
    inner: ToolChain,
) -> ToolChain:
    async def layer(run: RunContext, call: ToolCall) -> Any:
        return await around(run, call, lambda c: inner(run, c))

    return layer


@dataclass(frozen=True, slots=True)
class Chains:
    """An engine's extensions composed: what the engine reads once, at creation."""

    #: ``around_run`` middleware around the agent call, the first extension outermost.
    run: RunChain
    #: ``around_tool`` middleware around the tool call, the first extension outermost.
    tool: ToolChain
    #: (plugin name, ``on_event``) of each observer, in order of registration.
    observers: tuple[tuple[str, Callable[[BaseEvent], None]], ...]
    #: ``resolve_tool`` of each resolver, in order of registration.
    resolvers: tuple[Callable[[str], Awaitable[Tool | None]], ...]
    #: The tools the extensions provide for this engine only, by name (later ones win).
    tools: dict[str, Tool]
    #: ``list_tools`` of each extension that lists the tools it resolves, in order.
    listers: tuple[Callable[[], Awaitable[Iterable[Tool]]], ...] = ()


class ExtensionStack:
    """The extensions of one engine, and their whole lifecycle: collect (``collect``), start
    with rollback (``start``), compose (``compose``), close (``close``).

    ``count_error`` is called with a plugin's name for each of its failures (the factory's
    error counter)."""

    __slots__ = ("_count_error", "_open", "close_timeout", "entries", "user_id")

    def __init__(
        self,
        entries: Sequence[tuple[str, Any]],
        *,
        user_id: str,
        close_timeout: float,
        count_error: Callable[[str], None],
    ) -> None:
        #: (plugin name, extension), in order of registration.
        self.entries: tuple[tuple[str, Any], ...] = tuple(entries)
        self.user_id = user_id
        self.close_timeout = close_timeout
        self._count_error = count_error
        # What ``close`` closes: the extensions once started (none before, none after a
        # failed start, which closed what it had started).
        self._open: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def collect(
        cls,
        plugins: PluginSet,
        hook_kwargs: dict[str, Any],
        extra: Sequence[Any],
        *,
        user_id: str,
        close_timeout: float,
        count_error: Callable[[str], None],
    ) -> ExtensionStack:
        """The plugins' extensions (``agentengine_engine_extensions`` called with
        ``hook_kwargs``), then ``extra`` (named by their ``plugin_name`` or type)."""
        entries: list[tuple[str, Any]] = []
        if plugins.manager.hook.agentengine_engine_extensions.get_hookimpls():
            for plugin_name, value in plugins.call_each(
                "agentengine_engine_extensions", hook_kwargs, isolate=False
            ):
                if value is None:
                    continue
                items: Iterable[Any] = value if isinstance(value, list | tuple) else (value,)
                for ext in items:
                    with contextlib.suppress(AttributeError, TypeError):
                        ext.plugin_name = plugin_name
                    entries.append((plugin_name, ext))
        for ext in extra:
            name = getattr(ext, "plugin_name", None) or type(ext).__name__
            entries.append((name, ext))
        return cls(entries, user_id=user_id, close_timeout=close_timeout, count_error=count_error)

    @property
    def extensions(self) -> tuple[Any, ...]:
        """The extensions, in order of registration."""
        return tuple(ext for _, ext in self.entries)

    @property
    def needs_start(self) -> bool:
        """True when some extension has an async ``start()`` to await."""
        return any(implements(ext, "start") for _, ext in self.entries)

    def mark_started(self) -> None:
        """Record the extensions as started without awaiting (none has a ``start()``)."""
        self._open = self.entries

    async def start(self, install: Callable[[], None]) -> None:
        """Start each extension in order, then ``install()`` (the engine composing the
        chains). When a ``start()`` or ``install()`` fails, the extensions already started are
        closed in reverse order and an ``AgentEngineError`` naming the plugin is raised (a
        cancellation of the caller propagates as such)."""
        if not self.entries:
            return
        started: list[tuple[str, Any]] = []
        try:
            for plugin_name, ext in self.entries:
                start = getattr(ext, "start", None)
                if start is not None:
                    try:
                        await start()
                    except BaseException as exc:
                        task = asyncio.current_task()
                        if (
                            isinstance(exc, asyncio.CancelledError)
                            and task is not None
                            and task.cancelling() > 0
                        ):
                            raise  # the caller was cancelled: a cancellation, not a failure
                        # SystemExit, KeyboardInterrupt ... refuse this engine, not the process
                        self._count_error(plugin_name)
                        raise AgentEngineError(
                            f"plugin {plugin_name!r} failed to start its extension for user "
                            f"{self.user_id!r}: {describe_error(exc)}"
                        ) from exc
                started.append((plugin_name, ext))
            install()
        except BaseException:
            await self._close_each(started)
            raise
        self._open = self.entries

    def compose(self, run_base: RunChain, tool_base: ToolChain) -> Chains:
        """The extensions' methods composed into call chains around ``run_base`` (the agent
        call) and ``tool_base`` (the tool call). A ``tools()`` that raises refuses the engine
        with an ``AgentEngineError`` naming the plugin."""
        run_chain = run_base
        tool_chain = tool_base
        observers: list[tuple[str, Callable[[BaseEvent], None]]] = []
        resolvers: list[Callable[[str], Awaitable[Tool | None]]] = []
        listers: list[Callable[[], Awaitable[Iterable[Tool]]]] = []
        local_tools: dict[str, Tool] = {}
        for _, ext in reversed(self.entries):
            if implements(ext, "around_run"):
                run_chain = _wrap_run(ext.around_run, run_chain)
            if implements(ext, "around_tool"):
                tool_chain = _wrap_tool(ext.around_tool, tool_chain)
        for plugin_name, ext in self.entries:
            if implements(ext, "on_event"):
                observers.append((plugin_name, ext.on_event))
            if implements(ext, "tools"):
                try:
                    provided = list(ext.tools())
                except BaseException as exc:  # plugin code: refuse the engine
                    raise AgentEngineError(
                        f"plugin {plugin_name!r} failed to list its tools for user "
                        f"{self.user_id!r}: {describe_error(exc)}"
                    ) from exc
                for t in provided:
                    local_tools[t.name] = t
            if implements(ext, "resolve_tool"):
                resolvers.append(ext.resolve_tool)
            if implements(ext, "list_tools"):
                listers.append(ext.list_tools)
        return Chains(
            run_chain, tool_chain, tuple(observers), tuple(resolvers), local_tools, tuple(listers)
        )

    async def close(self) -> None:
        """Close the started extensions in reverse order, each ``close()`` given
        ``close_timeout`` seconds; failures are logged with the plugin's name and counted,
        never raised. Idempotent."""
        opened, self._open = self._open, ()
        await self._close_each(opened)

    async def _close_each(self, entries: Sequence[tuple[str, Any]]) -> None:
        for plugin_name, ext in reversed(entries):
            if getattr(ext, "close", None) is not None and implements(ext, "close"):
                await self._close_one(plugin_name, ext)

    async def _close_one(self, plugin_name: str, ext: Any) -> None:
        """``await ext.close()`` for at most ``close_timeout`` seconds. A close still going
        after that is cancelled and left behind."""
        grace = self.close_timeout
        plugin = getattr(ext, "plugin_name", None) or plugin_name
        closing = asyncio.ensure_future(contained(ext.close))
        done, _ = await asyncio.wait((closing,), timeout=grace)
        if not done:
            closing.cancel()
            self._count_error(plugin)
            _log.error(
                "extension did not close in time",
                plugin=plugin,
                user_id=self.user_id,
                close_timeout=grace,
            )
            return
        exc = closing.result()
        if exc is not None:
            self._count_error(plugin)
            _log.error(
                "extension failed to close",
                plugin=plugin,
                user_id=self.user_id,
                error=describe_error(exc),
            )
