"""Every tool call of an OpenAI Agents SDK agent, through the engine.

Each run gives the SDK a copy of the framework agent (``Agent.clone``, made once per set of
tools and reused: the tools find the run they belong to in ``CURRENT_RUN``, a context variable
the SDK's tasks inherit from the run's own) whose tools are:

* the agentengine tools named in ``tools=``, as SDK ``FunctionTool`` objects (``engine_tool``)
  under the names ``agentengine.frameworks.names`` makes, whose invocation is
  ``run.call_tool``: the engine looks the tool up (the user's own MCP session for ``time.*``),
  validates the arguments (the SDK does not: the schema is given to the model non-strict), runs
  ``around_tool`` middleware under the tool's timeout and emits the call's
  ``tool_executing``/``tool_completed``;
* the framework agent's own ``FunctionTool`` objects, each wrapped (``own_tool``) so that its
  execution is ``run.call_tool(name, args, tool=FrameworkTool(...))``: the same events,
  middleware and timeouts, while the SDK keeps its own argument parsing and failure policy.

What goes back to the SDK: an agentengine tool's result (JSON text when it is not a string);
for a failed engine call (invalid arguments, the tool raised or timed out, middleware refused
it) the failure's message as the tool's output, which the model reads and adapts to, the SDK's
own convention. What a framework tool raised goes through the SDK's failure policy of that tool
(``failure_error_function``: by default a message for the model; ``None``: the run fails).

Tools the adapter cannot wrap before the run (those of agents handed off to, of the SDK's own
``mcp_servers``, computer and shell tools) are reported from the run hooks (``ObservedCalls``):
``on_tool_start`` opens the call's pair, ``on_tool_end`` closes it with the tool's result.
Tools the model provider runs itself (web search, file search, code interpreter, image
generation, hosted MCP) arrive as finished ``tool_called`` items: ``report_hosted`` gives each
its pair, with the item as the result.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
from collections.abc import Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from agentengine import Tool, ToolError
from agentengine.frameworks.tools import FrameworkTool, refuse_call, relayed
from agents import FunctionTool, RunHooks
from agents.tool import maybe_invoke_function_tool_failure_error_function

if TYPE_CHECKING:
    from agentengine import RunContext
    from agentengine.frameworks.names import ToolNames
    from agents.tool_context import ToolContext

__all__ = [
    "CURRENT_RUN",
    "ObservedCalls",
    "engine_tool",
    "engine_tools",
    "is_routed",
    "own_tool",
    "own_tools",
    "parse_args",
    "report_hosted",
]

#: The agentengine run the SDK is running a tool for (set by the adapter for each run).
CURRENT_RUN: ContextVar[RunContext] = ContextVar("agentengine_openai_agents_run")

#: Attribute set on the FunctionTools whose calls go through the engine (kept by ``copy``).
_ROUTED = "_agentengine_routed"


def is_routed(tool: Any) -> bool:
    """Whether ``tool`` is one of the tools whose calls this adapter sends through the engine."""
    return getattr(tool, _ROUTED, False) is True


def parse_args(text: str) -> dict[str, Any] | None:
    """The model's arguments (JSON text) as an object; ``None`` when they are not one."""
    try:
        args = json.loads(text) if text else {}
    except ValueError:
        return None
    return args if isinstance(args, dict) else None


def _model_output(value: Any) -> str:
    """An engine tool's result as the text the model reads."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)


def engine_tool(name: str, tool: Tool, model_name: str) -> FunctionTool:
    """The agentengine tool ``name`` as an SDK ``FunctionTool`` calling it through the engine
    (for the run in ``CURRENT_RUN``)."""

    async def invoke(ctx: ToolContext[Any], text: str) -> str:
        run = CURRENT_RUN.get()
        args = parse_args(text)
        if args is None:
            reason = f"the arguments of tool {name!r} are not a JSON object: {text[:200]!r}"
            await refuse_call(run, name, {"_raw": text}, reason)
            return reason
        try:
            return _model_output(await run.call_tool(name, args))
        except ToolError as exc:
            return exc.message

    function = FunctionTool(
        name=model_name,
        description=tool.description or "",
        params_json_schema=dict(tool.input_schema),
        on_invoke_tool=invoke,
        strict_json_schema=False,
    )
    setattr(function, _ROUTED, True)
    return function


def _sdk_invoker(tool: FunctionTool) -> Any:
    """The SDK's execution of ``tool`` without its failure handling (applied after the engine's
    call instead, so the engine sees what the tool raised). ``@function_tool`` tools of
    openai-agents 0.24 wrap it in an invoker keeping it as ``_invoke_tool_impl`` (the
    dependency pins 0.24.x); any other ``FunctionTool`` is called as it is."""
    invoker = tool.on_invoke_tool
    return getattr(invoker, "_invoke_tool_impl", invoker)


def own_tool(tool: FunctionTool) -> FunctionTool:
    """A copy of the framework agent's ``tool`` whose execution goes through the engine (of
    the run in ``CURRENT_RUN``)."""
    execute = _sdk_invoker(tool)

    async def invoke(ctx: ToolContext[Any], text: str) -> Any:
        run = CURRENT_RUN.get()
        args = parse_args(text)
        shown = args if args is not None else {"_raw": text}
        framework = FrameworkTool(tool.name, tool.description, lambda: execute(ctx, text))
        try:
            return await run.call_tool(tool.name, shown, tool=framework)
        except ToolError as exc:
            original = relayed(exc)
            if original is None:  # the engine refused or timed the call out: tell the model
                return exc.message
            if not isinstance(original, Exception):
                raise original from None
            handled = await maybe_invoke_function_tool_failure_error_function(
                function_tool=tool, context=ctx, error=original
            )
            if handled is None:  # the tool's policy: what it raises fails the run
                raise original from None
            return handled

    wrapped = copy.copy(tool)
    wrapped.on_invoke_tool = invoke
    setattr(wrapped, _ROUTED, True)
    return wrapped


class _Observed(Tool):
    """A call the SDK runs itself, reported through the engine: ``invoke`` waits for its end."""

    def __init__(self, name: str, done: asyncio.Future[Any]) -> None:
        super().__init__(name)
        self._done = done

    async def invoke(self, run: RunContext, args: dict[str, Any]) -> Any:
        return await self._done


class ObservedCalls(RunHooks[Any]):
    """The pair of events of each tool call the SDK runs without the adapter's wrapping (see
    the module docs), keyed by the SDK's call id; parallel calls end in any order."""

    def __init__(self, run: RunContext) -> None:
        self._run = run
        self._open: dict[str, tuple[asyncio.Future[Any], asyncio.Task[Any]]] = {}

    async def on_tool_start(self, context: Any, agent: Any, tool: Any) -> None:
        if is_routed(tool):
            return
        call_id = getattr(context, "tool_call_id", None) or f"{tool.name}-{id(context)}"
        args = parse_args(getattr(context, "tool_arguments", "") or "") or {}
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(self._report(tool.name, args, done))
        self._open[call_id] = (done, task)
        await asyncio.sleep(0)  # let the call's tool_executing go out before the tool runs

    async def _report(self, name: str, args: dict[str, Any], done: asyncio.Future[Any]) -> None:
        with contextlib.suppress(ToolError):
            await self._run.call_tool(name, args, tool=_Observed(name, done))

    async def on_tool_end(self, context: Any, agent: Any, tool: Any, result: Any) -> None:
        if is_routed(tool):
            return
        call_id = getattr(context, "tool_call_id", None) or f"{tool.name}-{id(context)}"
        entry = self._open.pop(call_id, None)
        if entry is None:
            return
        done, task = entry
        if not done.done():
            done.set_result(_jsonable(result))
        await task

    async def close(self) -> None:
        """End the calls still open (the run failed or was cancelled while they ran)."""
        entries = list(self._open.values())
        self._open.clear()
        for done, task in entries:
            if not done.done():
                done.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _jsonable(value: Any) -> Any:
    if isinstance(value, str | int | float | bool | None | list | dict):
        return value
    return str(value)


def own_tools(tools: list[Any]) -> list[Any]:
    """The framework agent's tools with each ``FunctionTool`` going through the engine."""
    return [own_tool(t) if isinstance(t, FunctionTool) else t for t in tools]


def engine_tools(tools: Mapping[str, Tool], names: ToolNames) -> list[Any]:
    """The agentengine tools of ``tools=`` as SDK tools."""
    return [engine_tool(name, tool, names.to_model[name]) for name, tool in tools.items()]


#: The items of calls the model provider ran itself, and the tool name shown for each.
_HOSTED = {
    "web_search_call": "web_search",
    "file_search_call": "file_search",
    "code_interpreter_call": "code_interpreter",
    "image_generation_call": "image_generation",
    "mcp_call": "mcp",
}


async def report_hosted(run: RunContext, raw: Any) -> None:
    """The pair of events of a call the model provider ran (``raw``: its output item), if it is
    one; other items are left alone."""
    data = raw.model_dump(mode="json", exclude_none=True) if hasattr(raw, "model_dump") else raw
    if not isinstance(data, dict) or data.get("type") not in _HOSTED:
        return
    name = _HOSTED[data["type"]]
    args: dict[str, Any] = {}
    if data["type"] == "mcp_call":  # hosted MCP: <server label>.<tool>, the model's arguments
        name = f"{data.get('server_label', 'mcp')}.{data.get('name', 'tool')}"
        args = parse_args(data.get("arguments") or "") or {}
    elif isinstance(data.get("action"), dict):
        args = data["action"]
    elif "queries" in data:
        args = {"queries": data["queries"]}

    async def finished() -> Any:
        if data.get("status") in {"failed", "incomplete"} or data.get("error"):
            raise RuntimeError(str(data.get("error") or f"the call ended {data['status']}"))
        return data

    call = FrameworkTool(name, "run by the model provider", finished)
    with contextlib.suppress(ToolError):  # reported in the events; the SDK goes on
        await run.call_tool(name, args, tool=call)
