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

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from agentengine import Tool, ToolError
from agentengine.frameworks.tools import (
    FrameworkTool as CoreFrameworkTool,
    UnknownToolsError,
    refuse_call,
    relayed,
    resolve_tools,
)
from pydantic import ValidationError
from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.exceptions import ModelRetry, ToolFailed
from pydantic_ai.tools import ToolDefinition
from pydantic_ai.toolsets import AbstractToolset, ToolsetTool
from pydantic_core import SchemaValidator, core_schema

from agentengine_pydantic_ai.names import ToolNames

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


def framework_error(exc: ToolError) -> BaseException:
    """What pydantic-ai gets for an engine call that failed (see the module docs)."""
    original = relayed(exc)
    if original is not None:
        return original
    cause = exc.__cause__
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


def _relay_message(exc: BaseException) -> str:
    retry = getattr(exc, "tool_retry", None)  # pydantic-ai's ToolRetryError: a ModelRetry
    if retry is not None:
        return f"the tool asked the model to retry: {retry.model_response_str()}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class FrameworkTool(CoreFrameworkTool):
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
        super().__init__(name, description, lambda: handler(validated), _relay_message)


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
