"""Every tool call of a pydantic-ai agent, through the engine.

Two pieces, added to each run of the framework agent:

* ``EngineToolset`` offers the agentengine tools named in ``tools=`` to the model (under the
  names ``agentengine_pydantic_ai.names`` makes) and calls them with ``run.call_tool``: the
  engine looks the tool up (the user's own MCP session for ``time.*``), validates the
  arguments, runs ``around_tool`` middleware under the tool's timeout and emits the call's
  ``tool_executing``/``tool_completed``. pydantic-ai does not validate these arguments itself
  (its validator accepts any object), so there is one validation, the engine's.
* ``EngineCapability`` wraps the execution of the framework agent's own tools the same way:
  ``run.call_tool(name, args, tool=FrameworkTool(...))``, so they get the same events,
  middleware and timeouts. A call pydantic-ai refuses before running anything (invalid
  arguments for one of its own tools, an unknown tool name) still gets its pair of events,
  with status ``error`` and pydantic-ai's reason.

A failed engine call goes back to pydantic-ai as what the model can act on: invalid arguments or
an unknown tool as ``ModelRetry`` (the model corrects the call; it counts against the tool's
retries), a tool that raised or timed out as ``ToolFailed`` (the model is told and adapts). The
framework's own tools keep pydantic-ai's semantics: what they raise reaches pydantic-ai as raised.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from agentengine import AgentEngineError, Tool, ToolArgumentError, ToolError
from pydantic import ValidationError
from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.exceptions import ModelRetry, ToolFailed
from pydantic_ai.tools import ToolDefinition
from pydantic_ai.toolsets import AbstractToolset, ToolsetTool
from pydantic_core import SchemaValidator, core_schema

from agentengine_pydantic_ai.names import ToolNames, is_per_user_pattern, match_patterns

if TYPE_CHECKING:
    from agentengine import RunContext
    from pydantic_ai.messages import ToolCallPart

__all__ = [
    "EngineCapability",
    "EngineToolset",
    "FrameworkTool",
    "UnknownToolsError",
    "call_args",
    "refuse_call",
    "resolve_tools",
]

#: Accepts any JSON object: the engine validates an agentengine tool's arguments.
_ANY_OBJECT = SchemaValidator(
    core_schema.dict_schema(core_schema.str_schema(), core_schema.any_schema())
)


class UnknownToolsError(AgentEngineError, LookupError):
    """Names or globs in ``tools=`` that match no tool this run's user can call."""


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


def framework_error(exc: ToolError) -> BaseException:
    """What pydantic-ai gets for an engine call that failed (see the module docs)."""
    cause = exc.__cause__
    if isinstance(cause, _RelayedError):
        return cause.original
    if isinstance(cause, ModelRetry | ToolFailed):
        return cause
    if exc.status == "error" and cause is None:  # unknown tool, invalid arguments
        return ModelRetry(exc.message)
    return ToolFailed(exc.message)


def call_args(call: ToolCallPart) -> dict[str, Any]:
    """The model's arguments of ``call`` as an object (for the events)."""
    try:
        args = call.args_as_dict()
    except Exception:  # not JSON: shown as the model sent it
        return {"_raw": call.args}
    return args if isinstance(args, dict) else {"_raw": args}


class _Refused(Tool):
    """A call refused before it ran: its arguments are "invalid" with pydantic-ai's reason."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(name)
        self.reason = reason

    def validate_args(self, args: Mapping[str, Any]) -> dict[str, Any]:
        raise ToolArgumentError(self.reason)


async def refuse_call(run: RunContext, name: str, args: dict[str, Any], reason: str) -> None:
    """Emit the pair of events of a call that never ran (status ``error``, ``reason``)."""
    shown = name.strip() or "(unnamed tool)"
    with contextlib.suppress(ToolError):  # reported in the events; pydantic-ai answers the model
        await run.call_tool(shown, args, tool=_Refused(shown, reason))


class _RelayedError(Exception):
    """What a framework tool raised, carried through the engine's call to be raised again."""

    def __init__(self, message: str, original: BaseException) -> None:
        super().__init__(message)
        self.original = original


def _relay_message(exc: BaseException) -> str:
    retry = getattr(exc, "tool_retry", None)  # pydantic-ai's ToolRetryError: a ModelRetry
    if retry is not None:
        return f"the tool asked the model to retry: {retry.model_response_str()}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class FrameworkTool(Tool):
    """One call of a tool of the pydantic-ai agent itself, as an agentengine tool.

    pydantic-ai validated the arguments already; ``invoke`` runs its execution lifecycle
    (``handler``) with them. Whatever that raises reaches pydantic-ai unchanged.
    """

    def __init__(
        self,
        name: str,
        description: str,
        handler: Callable[[dict[str, Any]], Any],
        validated: dict[str, Any],
    ) -> None:
        super().__init__(name, description)
        self._handler = handler
        self._validated = validated

    async def invoke(self, run: RunContext, args: dict[str, Any]) -> Any:
        try:
            return await self._handler(self._validated)
        except Exception as exc:
            raise _RelayedError(_relay_message(exc), exc) from exc


class EngineToolset(AbstractToolset[Any]):
    """The agentengine tools of ``tools=``, offered to the model, called through the engine."""

    def __init__(self, run: RunContext, tools: Mapping[str, Tool], names: ToolNames) -> None:
        self._run = run
        self._tools = dict(tools)
        self.names = names

    @property
    def id(self) -> str | None:
        return "agentengine"

    async def get_tools(self, ctx: Any) -> dict[str, ToolsetTool[Any]]:
        return {
            self.names.to_model[name]: ToolsetTool(
                toolset=self,
                tool_def=ToolDefinition(
                    name=self.names.to_model[name],
                    description=tool.description or None,
                    parameters_json_schema=tool.input_schema,
                    metadata={"agentengine_tool": name},
                ),
                max_retries=ctx.max_retries,
                args_validator=_ANY_OBJECT,
            )
            for name, tool in self._tools.items()
        }

    async def call_tool(
        self, name: str, tool_args: dict[str, Any], ctx: Any, tool: ToolsetTool[Any]
    ) -> Any:
        try:
            return await self._run.call_tool(self.names.to_engine.get(name, name), tool_args)
        except ToolError as exc:
            raise framework_error(exc) from None


class EngineCapability(AbstractCapability[Any]):
    """Routes the framework agent's own tool calls through the engine (see the module docs)."""

    def __init__(self, run: RunContext, names: ToolNames) -> None:
        self._run = run
        self._names = names
        #: The framework's ids of the calls this capability reported (the others, which
        #: pydantic-ai settled without running anything, are reported from the event stream).
        self.reported: set[str] = set()

    def engine_name(self, model_name: str) -> str:
        return self._names.to_engine.get(model_name, model_name)

    async def wrap_tool_validate(
        self, ctx: Any, *, call: ToolCallPart, tool_def: ToolDefinition, args: Any, handler: Any
    ) -> Any:
        try:
            return await handler(args)
        except (ValidationError, ModelRetry, ToolFailed) as exc:
            self.reported.add(call.tool_call_id)
            reason = exc.message if isinstance(exc, ModelRetry | ToolFailed) else str(exc)
            await refuse_call(
                self._run, self.engine_name(call.tool_name), call_args(call), str(reason)
            )
            raise

    async def wrap_tool_execute(
        self, ctx: Any, *, call: ToolCallPart, tool_def: ToolDefinition, args: Any, handler: Any
    ) -> Any:
        self.reported.add(call.tool_call_id)
        if call.tool_name in self._names.to_engine:  # EngineToolset.call_tool reports it
            return await handler(args)
        tool = FrameworkTool(call.tool_name, tool_def.description or "", handler, args)
        try:
            return await self._run.call_tool(call.tool_name, call_args(call), tool=tool)
        except ToolError as exc:
            raise framework_error(exc) from None
