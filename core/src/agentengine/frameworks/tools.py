"""Which agentengine tools a framework agent may call, and calls that go through the engine.

* ``resolve_tools``: the tools a run's ``tools=`` patterns name, registered tools first, then
  this user's per-user tools (MCP sessions) for dotted patterns; ``UnknownToolsError`` names
  every pattern that matches nothing (a run fails with it before the model is called).
* ``check_registered``: the same rule when the factory starts, for patterns that can only name
  registered tools (``RegistrationError``).
* ``FrameworkTool``: one call of a framework agent's own tool, run through ``run.call_tool``
  (the engine's events, ``around_tool`` middleware and timeout); what the tool raised comes
  back out as ``RelayedError`` carrying the original exception, so the adapter hands the
  framework exactly what its tool raised.
* ``refuse_call``: the pair of events of a call the framework settled without running
  anything (invalid arguments, a made-up tool name), status ``error`` with its reason.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from agentengine.definitions.tools import Tool
from agentengine.errors import (
    RegistrationError,
    RelayedError,
    ToolArgumentError,
    ToolError,
    UnknownToolsError,
    describe_error,
)
from agentengine.frameworks.names import is_per_user_pattern, match_patterns

if TYPE_CHECKING:
    from agentengine.definitions.run import RunContext

__all__ = [
    "FrameworkTool",
    "RelayedError",
    "UnknownToolsError",
    "check_patterns",
    "check_registered",
    "refuse_call",
    "relayed",
    "resolve_tools",
]


def check_patterns(agent: str, patterns: Iterable[Any]) -> tuple[str, ...]:
    """``tools=`` as a tuple of names; ``RegistrationError`` for an entry that is no name."""
    out = tuple(patterns)
    for pattern in out:
        if not isinstance(pattern, str) or not pattern.strip():
            raise RegistrationError(f"agent {agent!r}: tools= holds {pattern!r}, not a tool name")
    return out


def check_registered(agent: str, patterns: Iterable[str], registered: Iterable[str]) -> None:
    """Raise ``RegistrationError`` naming every pattern that matches no registered tool and
    cannot name a per-user (MCP, dotted) tool: called when the factory starts."""
    names = sorted(registered)
    matched = match_patterns(patterns, names)
    missing = [p for p, found in matched.items() if not found and not is_per_user_pattern(p)]
    if missing:
        raise RegistrationError(
            f"agent {agent!r}: tools= {', '.join(repr(m) for m in missing)} "
            f"{'matches' if len(missing) == 1 else 'match'} no registered tool "
            f"(registered: {', '.join(names) or 'none'}); register the tool, fix "
            "the name, or name a per-user MCP tool as <server>.<tool>"
        )


async def _per_user_tools(run: RunContext) -> dict[str, Tool]:
    """Every tool the run can call, those extensions resolve per user included (the user's MCP
    tools: this opens the user's MCP sessions not open yet)."""
    return {t.name: t for t in await run.list_tools() if isinstance(t, Tool)}


async def resolve_tools(run: RunContext, patterns: tuple[str, ...]) -> dict[str, Tool]:
    """The agentengine tools ``patterns`` name for this run, by name.

    Registered tools first; patterns that may name per-user tools (dotted, MCP) and match no
    registered tool are looked up in ``run.list_tools()`` (this user's MCP tools). Raises
    ``UnknownToolsError`` naming every pattern that matches nothing.
    """
    if not patterns:
        return {}
    found: dict[str, Tool] = {}
    registered = run.tool_names()
    matched = match_patterns(patterns, registered)
    missing: list[str] = []
    per_user: dict[str, Tool] | None = None
    for pattern, names in matched.items():
        if names:
            for name in names:
                tool = run.get_tool(name)
                if isinstance(tool, Tool):
                    found[name] = tool
            continue
        if is_per_user_pattern(pattern):
            if per_user is None:
                per_user = await _per_user_tools(run)
            user_names = match_patterns([pattern], per_user)[pattern]
            if user_names:
                found.update((n, per_user[n]) for n in user_names)
                continue
        missing.append(pattern)
    if missing:
        available = sorted({*registered, *(per_user or {})})
        raise UnknownToolsError(
            f"tools= of agent {run.agent.name!r}: {', '.join(repr(m) for m in missing)} "
            f"{'matches' if len(missing) == 1 else 'match'} no tool user {run.user_id!r} can call "
            f"(available: {', '.join(available) or 'none'}; MCP tools appear once their server "
            "is configured in [mcp] and reachable)"
        )
    return found


class _Refused(Tool):
    """A call refused before it ran: its arguments are "invalid" with the framework's reason."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(name)
        self.reason = reason

    def validate_args(self, args: Mapping[str, Any]) -> dict[str, Any]:
        raise ToolArgumentError(self.reason)


async def refuse_call(run: RunContext, name: str, args: dict[str, Any], reason: str) -> None:
    """Emit the pair of events of a call that never ran (status ``error``, ``reason``)."""
    shown = name.strip() or "(unnamed tool)"
    with contextlib.suppress(ToolError):  # reported in the events; the framework tells the model
        await run.call_tool(shown, args, tool=_Refused(shown, reason))


def relayed(exc: ToolError) -> BaseException | None:
    """The exception the framework's own tool raised in the failed call ``exc``, if any."""
    cause = exc.__cause__
    return cause.original if isinstance(cause, RelayedError) else None


class FrameworkTool(Tool):
    """One call of a tool of the framework agent itself, as an agentengine tool.

    The framework validated the arguments already (``args`` are for the events); ``invoke``
    awaits ``call()``, the framework's own execution of the tool. What that raises is relayed
    as ``RelayedError`` (the events show ``describe(exc)``; ``relayed`` gets it back).
    """

    def __init__(
        self,
        name: str,
        description: str,
        call: Callable[[], Awaitable[Any]],
        describe: Callable[[BaseException], str] = describe_error,
    ) -> None:
        super().__init__(name, description)
        self._call = call
        self._describe = describe

    async def invoke(self, run: RunContext, args: dict[str, Any]) -> Any:
        try:
            return await self._call()
        except Exception as exc:
            raise RelayedError(self._describe(exc), exc) from exc
