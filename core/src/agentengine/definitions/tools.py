"""Tools: typed functions an agent calls through ``run.call_tool(name, args)``.

``@tool`` turns an annotated function into a ``FunctionTool``: the docstring is the
description, the signature becomes a pydantic model (and so a JSON schema), and arguments are
validated before the handler runs. Plugins that get tools from elsewhere (an MCP server, say)
subclass ``Tool`` and implement ``validate_args`` and ``invoke`` themselves.

A plain (``def``) function is accepted too, for blocking code (a database driver without
asyncio, a CPU-bound parser): each call runs it in a worker thread (``asyncio.to_thread``,
the loop's default executor), so it never blocks the event loop. A thread cannot be stopped:
when the tool's timeout passes or the run is cancelled, the call is reported timed out (or
cancelled) at once and the run goes on, but the thread runs on to the end of the function,
its result discarded, and holds one of the executor's few workers (``min(32, CPUs + 4)``)
meanwhile. Give blocking tools their own timeouts (a driver's query timeout) when they may
hang, and prefer ``async def`` where a library offers it.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeGuard, TypeVar, overload

from pydantic import BaseModel, ConfigDict, ValidationError, create_model
from pydantic_core import SchemaValidator

from agentengine.definitions.registry import NamedRegistry
from agentengine.definitions.run import RunContext
from agentengine.errors import RegistrationError, ToolArgumentError

__all__ = [
    "FunctionTool",
    "Tool",
    "ToolArgumentError",
    "ToolRegistry",
    "fields_validator",
    "check_arguments",
    "format_validation_error",
    "is_mapping",
    "not_an_object",
    "signature_model",
    "tool",
]

_F = TypeVar("_F", bound=Callable[..., Any])


def is_mapping(value: object) -> TypeGuard[Mapping[str, Any]]:
    """``isinstance(value, Mapping)``, with plain dicts (the common case) sparing the
    microsecond the ABC check costs on the run path."""
    return type(value) is dict or isinstance(value, Mapping)


def not_an_object(what: str, value: object) -> ToolArgumentError:
    """The error for tool arguments or a run input that is not an object (a mapping): the one
    wording of that rule, for the engine, ``Tool.validate_args``, ``Agent.validate_input`` and
    the server alike."""
    return ToolArgumentError(
        f"{what} must be an object, got {type(value).__name__}; pass the arguments by name "
        '(a dict, or a JSON object such as {"text": "hi"})'
    )


def check_arguments(value: object, what: str = "arguments") -> Mapping[str, Any]:
    """The one rule for a tool's arguments (and, with None allowed, a run's input: see
    ``check_run_input``): an object, a mapping of arguments by name. Returns ``value``;
    raises ``ToolArgumentError`` (a ``ValueError``) naming ``what`` and the type otherwise.
    A tool's own schema is checked by its ``validate_args``."""
    if is_mapping(value):
        return value
    raise not_an_object(what, value)


def format_validation_error(what: str, exc: ValidationError) -> str:
    """One readable line per problem: ``field: message (got value)``."""
    problems = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(arguments)"
        got = err.get("input")
        shown = "" if err["type"] == "missing" else f" (got {got!r:.60})"
        problems.append(f"{loc}: {err['msg']}{shown}")
    return f"invalid arguments for {what}: " + "; ".join(problems)


def _is_run_param(param: inspect.Parameter, hints: Mapping[str, Any]) -> bool:
    annotation = hints.get(param.name, param.annotation)
    return annotation is RunContext or annotation == "RunContext"


#: What a tool's or agent's parameter may be annotated with, for error messages and the docs.
ALLOWED_TYPES = (
    "str, int, float, bool, None, Literal[...], an Enum, datetime/date/time/timedelta, UUID, "
    "Decimal, Path; list/tuple/set/dict of those; X | None; a pydantic model, a dataclass or a "
    "typing_extensions.TypedDict made of those (Any accepts any JSON value)"
)


def _function_label(func: Callable[..., Any]) -> str:
    module = getattr(func, "__module__", None)
    qualname = getattr(func, "__qualname__", None) or repr(func)
    return f"{module}.{qualname}" if module else qualname


def _unresolved(func: Callable[..., Any], name: str, annotation: Any) -> str | None:
    """Why a string annotation cannot be evaluated (``None`` when it can)."""
    if not isinstance(annotation, str):
        return None
    scope = dict(getattr(func, "__globals__", {}))
    try:
        eval(annotation, scope)  # noqa: S307 - how annotations are evaluated (typing does too)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _bad_type(what: str, func: Callable[..., Any], name: str, annotation: Any, why: str) -> str:
    shown = (
        annotation
        if isinstance(annotation, str)
        else getattr(annotation, "__qualname__", repr(annotation))
    )
    return (
        f"{what} (function {_function_label(func)}): parameter {name!r} has type {shown!r}, "
        f"which cannot be described as JSON ({why}); a tool's or agent's parameters must be "
        f"JSON-describable: {ALLOWED_TYPES}. Take the data in such a type and build the object "
        "inside the function (RunContext is passed in, not part of the schema)."
    )


def signature_model(
    func: Callable[..., Any], model_name: str, *, skip_first: bool = False, what: str = ""
) -> tuple[type[BaseModel], str | None]:
    """Build a pydantic model from ``func``'s parameters.

    Returns the model and the name of the parameter that receives the ``RunContext`` (if any).
    ``*args`` / ``**kwargs`` are refused: a schema needs named parameters. So is a parameter
    whose type has no JSON schema or cannot be resolved: ``RegistrationError`` names ``what``
    (``"tool 'forecast'"``), the function, the parameter and the types allowed.
    """
    what = what or model_name
    sig = inspect.signature(func)
    try:
        hints = inspect.get_annotations(func, eval_str=True)
    except NameError:
        hints = inspect.get_annotations(func)
        for param in sig.parameters.values():
            why = _unresolved(func, param.name, hints.get(param.name))
            if why is not None and hints.get(param.name) != "RunContext":
                raise RegistrationError(
                    f"{what} (function {_function_label(func)}): the annotation of parameter "
                    f"{param.name!r}, {hints[param.name]!r}, cannot be resolved ({why}); import "
                    "that type at module level (not only under TYPE_CHECKING), or use one of "
                    f"the JSON-describable types: {ALLOWED_TYPES}"
                ) from None
    fields: dict[str, Any] = {}
    run_param: str | None = None
    params = list(sig.parameters.values())
    if skip_first and params:
        run_param = params[0].name
        params = params[1:]
    for param in params:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise RegistrationError(
                f"{what} (function {_function_label(func)}): parameter {param.name!r} is "
                "*args/**kwargs; declare each argument as a named, annotated parameter so it "
                "has a schema"
            )
        if run_param is None and _is_run_param(param, hints):
            run_param = param.name
            continue
        annotation = hints.get(param.name, Any)
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param.name] = (annotation, default)
    try:
        model = create_model(
            model_name,
            __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=True),
            **fields,
        )
        model.model_json_schema()  # a type without a schema fails here, not when described
    except Exception as exc:
        raise RegistrationError(_explain(what, func, fields, exc)) from None
    return model, run_param


def _explain(what: str, func: Callable[..., Any], fields: dict[str, Any], exc: Exception) -> str:
    """The first parameter whose type has no schema, named, with the allowed types."""
    from pydantic import PydanticInvalidForJsonSchema, TypeAdapter

    for name, (annotation, _default) in fields.items():
        try:
            TypeAdapter(annotation, config=ConfigDict(arbitrary_types_allowed=True)).json_schema()
        except PydanticInvalidForJsonSchema:
            reason = "a class pydantic can only check with isinstance(), not a JSON value"
            return _bad_type(what, func, name, annotation, reason)
        except Exception as field_exc:
            reason = str(field_exc).split("\n", 1)[0]
            return _bad_type(what, func, name, annotation, reason)
    reason = str(exc).split("\n", 1)[0]
    return (
        f"{what} (function {_function_label(func)}): its parameters have no JSON schema "
        f"({reason}); use JSON-describable types: {ALLOWED_TYPES}"
    )


def fields_validator(model: type[BaseModel]) -> Callable[[Any], dict[str, Any]]:
    """A function validating a mapping against ``model`` that returns the field values as a
    dict (what a handler is called with) and raises pydantic's ``ValidationError``.

    For a plain model (fields only: no model validators, no custom ``__init__``) it validates
    with the model's own "model-fields" core schema and config: the same checks, coercions and
    defaults, without building a model instance, at under half the cost. Other models go
    through the model itself.
    """
    schema: Any = model.__pydantic_core_schema__
    definitions = None
    if schema.get("type") == "definitions":  # nested models: keep their definitions
        definitions, schema = schema["definitions"], schema["schema"]
    if (
        schema.get("type") == "model"
        and schema["schema"].get("type") == "model-fields"
        and not schema.get("custom_init")
        and not schema.get("root_model")
    ):
        inner = schema["schema"]
        if definitions is not None:
            inner = {"type": "definitions", "schema": inner, "definitions": definitions}
        validate_fields = SchemaValidator(inner, schema.get("config")).validate_python

        def validate(data: Any) -> dict[str, Any]:
            values: dict[str, Any] = validate_fields(data)[0]  # (fields, extra, fields set)
            return values

        return validate
    validate_model = model.__pydantic_validator__.validate_python

    def validate_via_model(data: Any) -> dict[str, Any]:
        # extra="forbid": the instance's __dict__ holds exactly the fields, and the instance
        # is discarded, so its dict is handed out as is.
        values: dict[str, Any] = validate_model(data).__dict__
        return values

    return validate_via_model


def first_paragraph(doc: str | None) -> str:
    if not doc:
        return ""
    return inspect.cleandoc(doc).split("\n\n", 1)[0].replace("\n", " ").strip()


class Tool:
    """A tool an agent can call. Subclass it for tools whose schema comes from elsewhere."""

    def __init__(
        self,
        name: str,
        description: str = "",
        *,
        timeout: float | None = None,
        input_schema: dict[str, Any] | None = None,
    ) -> None:
        if not name or not isinstance(name, str) or name != name.strip():
            raise RegistrationError(f"a tool needs a non-empty name without spaces, got {name!r}")
        if timeout is not None and timeout <= 0:
            raise RegistrationError(f"tool {name!r}: timeout must be positive, got {timeout}")
        self.name = name
        self.description = description
        self.timeout = timeout
        self._input_schema = input_schema or {"type": "object", "properties": {}}

    @property
    def input_schema(self) -> dict[str, Any]:
        """The JSON schema of the arguments."""
        return self._input_schema

    def validate_args(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """Check ``args``; return them as the handler will receive them.

        Raise ``ToolArgumentError`` naming every problem.
        """
        return dict(args)

    async def invoke(self, run: RunContext, args: dict[str, Any]) -> Any:
        """Run the tool with already validated ``args``."""
        raise NotImplementedError(f"tool {self.name!r} does not implement invoke()")

    def describe(self) -> dict[str, Any]:
        """Name, description, schema and timeout, as shown by ``agentengine plugins``."""
        return {
            "name": self.name,
            "description": self.description,
            "input_schema": self.input_schema,
            "timeout": self.timeout,
        }

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


def _call_in_thread(tool: FunctionTool, args: dict[str, Any]) -> Any:
    result = tool.func(**args)
    if inspect.isawaitable(result):  # an async callable the checks above did not recognise
        close = getattr(result, "close", None)
        if close is not None:
            close()  # no "never awaited" warning on top of the error
        raise TypeError(
            f"tool {tool.name!r} returned an awaitable from a worker thread; define its "
            "function with 'async def' so that it runs on the event loop"
        )
    return result


class FunctionTool(Tool):
    """A tool made from a typed function (see ``@tool``): ``async def``, or a plain ``def``
    run in a worker thread (see the module docs for what a timeout can and cannot do)."""

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        timeout: float | None = None,
    ) -> None:
        label = getattr(func, "__qualname__", repr(func))
        if inspect.isasyncgenfunction(func) or inspect.isgeneratorfunction(func):
            raise RegistrationError(
                f"@tool needs a function returning its result; {label} is a generator "
                "(return a list instead of yielding items)"
            )
        if not callable(func):
            raise RegistrationError(f"@tool needs a function, got {type(func).__name__}")
        #: False for a plain function, called in a worker thread.
        self.is_async = inspect.iscoroutinefunction(func) or (
            not inspect.isroutine(func) and inspect.iscoroutinefunction(type(func).__call__)
        )
        tool_name = name or func.__name__
        model, run_param = signature_model(func, f"{tool_name}_args", what=f"tool {tool_name!r}")
        super().__init__(
            tool_name,
            description if description is not None else first_paragraph(func.__doc__),
            timeout=timeout,
            input_schema=model.model_json_schema(),
        )
        self.func = func
        self.args_model = model
        self._run_param = run_param
        self._validate = fields_validator(model)

    def validate_args(self, args: Mapping[str, Any]) -> dict[str, Any]:
        if type(args) is not dict and not is_mapping(args):  # a call less for a dict
            raise not_an_object(f"arguments for tool {self.name!r}", args)
        try:
            return self._validate(args)
        except ValidationError as exc:
            raise ToolArgumentError(format_validation_error(f"tool {self.name!r}", exc)) from None

    def invoke(self, run: RunContext, args: dict[str, Any]) -> Coroutine[Any, Any, Any]:
        # Returns the function's own coroutine rather than wrapping it in another one: the
        # same result for ``await tool.invoke(...)``, one coroutine fewer per call.
        if self._run_param is not None:
            args = {self._run_param: run, **args}
        if self.is_async:
            return self.func(**args)  # type: ignore[no-any-return]
        # A copy of the context goes with the call: log lines of the thread carry the run's
        # ids. Cancelling the awaiting task does not stop the thread (see the module docs).
        return asyncio.to_thread(functools.partial(_call_in_thread, self, args))

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the underlying function directly (handy in unit tests); a plain function
        is called in this thread."""
        if self.is_async:
            return await self.func(*args, **kwargs)
        return self.func(*args, **kwargs)


@overload
def tool(func: _F, /) -> FunctionTool: ...
@overload
def tool(
    *, name: str | None = None, description: str | None = None, timeout: float | None = None
) -> Callable[[_F], FunctionTool]: ...
def tool(
    func: _F | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
) -> FunctionTool | Callable[[_F], FunctionTool]:
    """Make a tool from a function: ``@tool`` or ``@tool(timeout=5.0, name=...)``.

    A parameter annotated ``RunContext`` receives the calling run (for scoped resources, the
    user's context, ``run.think``); it is not part of the schema.

    ``async def`` functions run on the event loop. A plain ``def`` runs in a worker thread
    (``asyncio.to_thread``): it may block, but a timeout or a cancellation cannot stop it:
    the call is reported timed out (or cancelled) and the thread runs on until the function
    returns (see the ``agentengine.definitions.tools`` docs). It may read the run it is given
    (``run.context``) but not await its methods: it is not on the event loop.
    """

    def build(f: _F) -> FunctionTool:
        return FunctionTool(f, name=name, description=description, timeout=timeout)

    return build(func) if func is not None else build


class ToolRegistry(NamedRegistry[Tool]):
    """Tools by name. ``add`` refuses a second tool of the same name, naming both plugins."""

    kind = "tool"

    def add(self, item: Tool | Callable[..., Any], *, name: str | None = None) -> Tool:
        """Register a tool (or a function, which is wrapped with ``@tool``)."""
        t = item if isinstance(item, Tool) else FunctionTool(item, name=name)
        return self._insert(t.name, t)
