"""``check_plugin``: does a plugin object fit agentengine's hooks, tools and extensions?

Used by the pytest kit (``agentengine.testing``) and by ``agentengine check-plugin
MODULE:OBJECT``. It returns a list of problems, each saying what is wrong and what to change;
an empty list means the plugin conforms. Checked:

* hooks: every ``agentengine_*`` attribute is a known hook (with a "did you mean"), marked
  ``@hookimpl`` (an unmarked one is silently never called), synchronous, and asks only for
  arguments the hook provides;
* tools and agents: registering them works (no duplicate names), names are usable, each has a
  description (its docstring), handlers are async, each tool's arguments have a valid JSON
  schema of type ``object``, and every parameter has a type annotation;
* scoped resources: declaring them works;
* extensions (what ``agentengine_engine_extensions`` returns for a throwaway engine): method
  names are ones the engine calls (misspellings are caught), each is async or sync as the
  engine expects, and each takes the arguments the engine passes.

Nothing here imports pytest.
"""

from __future__ import annotations

import difflib
import inspect
import json
import re
from collections.abc import Callable
from typing import Any

from agentengine.config import Settings
from agentengine.context import UserExecutionContext
from agentengine.definitions.agents import AgentRegistry
from agentengine.definitions.resources import ResourceRegistry
from agentengine.definitions.tools import FunctionTool, Tool, ToolRegistry
from agentengine.plugins.extensions import Extension
from agentengine.plugins.hooks import HOOK_PREFIX, PROJECT_NAME, AgentEngineHookSpecs
from agentengine.plugins.loading import plugin_name_of

__all__ = ["EXTENSION_METHODS", "check_plugin"]

#: Extension methods the engine calls: name -> (arguments after self, must be async).
EXTENSION_METHODS: dict[str, tuple[tuple[str, ...], bool]] = {
    "start": ((), True),
    "close": ((), True),
    "around_run": (("run", "call_next"), True),
    "around_tool": (("run", "call", "call_next"), True),
    "tools": ((), False),
    "resolve_tool": (("name",), True),
    "list_tools": ((), True),
    "on_event": (("event",), False),
}

_TOOL_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_IMPL_MARK = f"{PROJECT_NAME}_impl"


def _hook_specs() -> dict[str, list[str]]:
    specs = {}
    for name in dir(AgentEngineHookSpecs):
        if name.startswith(HOOK_PREFIX):
            params = list(inspect.signature(getattr(AgentEngineHookSpecs, name)).parameters)
            specs[name] = params[1:]  # drop self
    return specs


def _suggest(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.75)
    return f"; did you mean {close[0]!r}?" if close else ""


def _positional(func: Callable[..., Any]) -> list[inspect.Parameter] | None:
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        return None
    return params


def _check_hooks(plugin: Any, problems: list[str]) -> list[str]:
    """Check every agentengine_* attribute; return the names of the usable hooks."""
    specs = _hook_specs()
    usable = []
    hooks = [a for a in dir(plugin) if a.startswith(HOOK_PREFIX)]
    if not hooks:
        problems.append(
            "the plugin implements no hook: add methods such as agentengine_register_tools, "
            f"decorated with @agentengine.hookimpl (known hooks: {', '.join(sorted(specs))})"
        )
    for attr in hooks:
        func = getattr(plugin, attr, None)
        if not callable(func):
            problems.append(f"{attr} is not a method; define it as a method marked @hookimpl")
            continue
        if attr not in specs:
            problems.append(
                f"{attr} is not a hook agentengine knows{_suggest(attr, list(specs))} "
                f"(known hooks: {', '.join(sorted(specs))})"
            )
            continue
        if getattr(func, _IMPL_MARK, None) is None:
            problems.append(
                f"{attr} is not marked @hookimpl, so it is never called; decorate it with "
                "@agentengine.hookimpl"
            )
            continue
        if inspect.iscoroutinefunction(func):
            problems.append(
                f"{attr} is async; hooks are synchronous and called once (do async work in an "
                "extension's start() or around_run)"
            )
            continue
        params = _positional(func) or []
        bad_kind = [p.name for p in params if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        if bad_kind:
            problems.append(
                f"{attr} takes *args/**kwargs ({', '.join(bad_kind)}); name the arguments it "
                f"needs, from: {', '.join(specs[attr]) or 'none'}"
            )
            continue
        unknown = [p.name for p in params if p.name not in specs[attr]]
        if unknown:
            problems.append(
                f"{attr} asks for argument(s) {', '.join(repr(u) for u in unknown)} the hook "
                f"does not provide; the hook's arguments are: {', '.join(specs[attr]) or 'none'} "
                "(a hook may take any subset of them, by these exact names)"
            )
            continue
        usable.append(attr)
    return usable


def _schema_problems(schema: Any) -> list[str]:
    if not isinstance(schema, dict):
        return [f"its input_schema must be a dict (a JSON schema), got {type(schema).__name__}"]
    found = []
    try:
        json.dumps(schema)
    except (TypeError, ValueError) as exc:
        found.append(f"its input_schema is not JSON-serialisable ({exc})")
    if schema.get("type") != "object":
        found.append(
            f'its input_schema must have "type": "object" (arguments are an object), got '
            f"{schema.get('type')!r}"
        )
    properties = schema.get("properties", {})
    if not isinstance(properties, dict):
        found.append('its input_schema "properties" must be an object mapping names to schemas')
        properties = {}
    for key, value in properties.items():
        if not isinstance(value, dict):
            found.append(f"input_schema property {key!r} must be a schema object, got {value!r}")
    required = schema.get("required", [])
    if not isinstance(required, list):
        found.append('its input_schema "required" must be a list of property names')
    else:
        missing = [r for r in required if r not in properties]
        if missing:
            found.append(f"input_schema requires {missing} but does not define them in properties")
    try:
        import jsonschema
    except ImportError:
        return found
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        found.append(f"its input_schema is not a valid JSON schema: {exc.message}")
    return found


def _check_tool(t: Any, where: str, problems: list[str]) -> None:
    if not isinstance(t, Tool):
        problems.append(
            f"{where}: {t!r} is not a Tool; make it with @agentengine.tool or subclass Tool"
        )
        return
    label = f"tool {t.name!r}"
    if not _TOOL_NAME.match(t.name):
        problems.append(
            f"{label}: names may use letters, digits, '_', '.' and '-' only (at most 64), so "
            "that every model provider accepts them; rename it"
        )
    if not (t.description or "").strip():
        problems.append(
            f"{label} has no description: give its function a docstring (its first paragraph "
            "is what the model reads to decide when to call it)"
        )
    problems.extend(f"{label}: {problem}" for problem in _schema_problems(t.input_schema))
    if isinstance(t, FunctionTool):
        problems.extend(_unannotated(label, t.func, skip_first=False))
    if not isinstance(t, FunctionTool):  # a FunctionTool's handler is checked when it is made
        invoke = type(t).invoke
        if invoke is Tool.invoke:
            problems.append(
                f"{label}: a Tool subclass must implement 'async def invoke(self, run, args)'"
            )
        elif not inspect.iscoroutinefunction(invoke):
            problems.append(f"{label}: invoke() must be 'async def'")


def _unannotated(label: str, func: Callable[..., Any], skip_first: bool) -> list[str]:
    """Parameters a schema knows nothing about: accepted as any value, so never validated."""
    params = _positional(func) or []
    if skip_first:
        params = params[1:]
    return [
        f"{label}: parameter {p.name!r} has no type annotation, so its schema accepts any "
        f"value and its arguments are never checked; annotate it (for example {p.name}: str)"
        for p in params
        if p.annotation is inspect.Parameter.empty
        and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        and p.name != "self"
    ]


def _call(plugin: Any, hook: str, problems: list[str], **kwargs: Any) -> Any:
    func = getattr(plugin, hook)
    params = _positional(func) or []
    try:
        return func(**{p.name: kwargs[p.name] for p in params})
    except Exception as exc:
        problems.append(f"{hook} raised {type(exc).__name__}: {exc}")
        return None


def _check_extension(ext: Any, problems: list[str]) -> None:
    label = f"extension {type(ext).__name__}"
    for method, (args, must_be_async) in EXTENSION_METHODS.items():
        impl = getattr(type(ext), method, None)
        if impl is None:
            impl = getattr(ext, method, None)
        if impl is None or impl is getattr(Extension, method, None):
            continue
        bound = getattr(ext, method)
        if not callable(bound):
            problems.append(f"{label}.{method} is not callable; make it a method")
            continue
        is_async = inspect.iscoroutinefunction(bound)
        if must_be_async and not is_async:
            problems.append(
                f"{label}.{method} must be 'async def' (the engine awaits it)"
                + (
                    " and return await call_next(...)"
                    if method in {"around_run", "around_tool"}
                    else ""
                )
            )
        if not must_be_async and is_async:
            problems.append(
                f"{label}.{method} must be a plain 'def': the engine calls it without awaiting"
                + (" (on_event must not block: queue the event)" if method == "on_event" else "")
            )
        params = _positional(bound)
        if params is None:
            continue
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        varargs = any(p.kind is p.VAR_POSITIONAL for p in params)
        required = [p for p in positional if p.default is inspect.Parameter.empty]
        if len(required) > len(args) or (len(positional) < len(args) and not varargs):
            shown = ", ".join(p.name for p in positional)
            problems.append(
                f"{label}.{method} takes ({shown}) but the engine calls it with "
                f"({', '.join(args)}); change its signature to {method}(self"
                + "".join(f", {a}" for a in args)
                + ")"
            )
    known = set(EXTENSION_METHODS) | {"plugin_name"}
    for attr in dir(ext):
        if attr.startswith("_") or attr in known:
            continue
        close = difflib.get_close_matches(attr, list(EXTENSION_METHODS), n=1, cutoff=0.8)
        if close and callable(getattr(ext, attr, None)):
            problems.append(
                f"{label} has {attr!r}, which the engine never calls; did you mean {close[0]!r}?"
            )
    tools = getattr(ext, "tools", None)
    if callable(tools) and not inspect.iscoroutinefunction(tools):
        try:
            provided = list(tools())
        except Exception as exc:
            problems.append(f"{label}.tools() raised {type(exc).__name__}: {exc}")
        else:
            names: set[str] = set()
            for t in provided:
                _check_tool(t, f"{label}.tools()", problems)
                name = getattr(t, "name", None)
                if name in names:
                    problems.append(f"{label}.tools() returns two tools named {name!r}")
                names.add(str(name))


def _check_extensions(plugin: Any, problems: list[str]) -> None:
    from agentengine.runtime.engine import FACTORY_ONLY, UserExecutionEngine
    from agentengine.runtime.factory import ExecutionEngineFactory

    # A throwaway engine (never started, never registered) for the hook to look at.
    factory = ExecutionEngineFactory(
        plugins=(), load_entrypoints=False, config=Settings(), environ={}, idle_ttl=None
    )
    context = UserExecutionContext.for_user("conformance-check")
    engine = UserExecutionEngine.from_services(FACTORY_ONLY, factory.services, context)
    value = _call(plugin, "agentengine_engine_extensions", problems, context=context, engine=engine)
    if value is None:
        return
    items = value if isinstance(value, list | tuple) else [value]
    for ext in items:
        _check_extension(ext, problems)


def check_plugin(plugin: Any) -> list[str]:
    """Check ``plugin`` (an object, module or class) against the hooks, tools and extension
    contracts. Returns the problems found, each saying what to change; empty when it conforms.
    """
    problems: list[str] = []
    if inspect.isclass(plugin):
        try:
            plugin = plugin()
        except Exception as exc:
            message = (
                f"the plugin class {plugin.__qualname__} cannot be instantiated without "
                f"arguments ({type(exc).__name__}: {exc}); give its __init__ defaults or "
                "register an instance"
            )
            return [message]
    name = plugin_name_of(plugin)
    hooks = _check_hooks(plugin, problems)
    if "agentengine_configure" in hooks:
        from agentengine.errors import ConfigError

        try:
            _call_strict(plugin, "agentengine_configure", settings=Settings())
        except ConfigError:
            pass  # refusing an empty configuration with a ConfigError is the contract
        except Exception as exc:
            problems.append(
                f"agentengine_configure raised {type(exc).__name__} with an empty configuration: "
                "use defaults, or raise ConfigError naming the missing key"
            )
    if "agentengine_register_tools" in hooks:
        tools = ToolRegistry()
        tools.current_plugin = name
        _call(plugin, "agentengine_register_tools", problems, registry=tools)
        for t in tools:
            _check_tool(t, "agentengine_register_tools", problems)
    if "agentengine_register_agents" in hooks:
        agents = AgentRegistry()
        agents.current_plugin = name
        _call(plugin, "agentengine_register_agents", problems, registry=agents)
        problems.extend(
            f"agent {a.name!r} has no description: give its function a docstring"
            for a in agents
            if not (a.description or "").strip()
        )
        for a in agents:
            problems.extend(_unannotated(f"agent {a.name!r}", a.func, skip_first=True))
    if "agentengine_register_resources" in hooks:
        resources = ResourceRegistry()
        resources.current_plugin = name
        _call(plugin, "agentengine_register_resources", problems, registry=resources)
    if "agentengine_engine_extensions" in hooks:
        _check_extensions(plugin, problems)
    if "agentengine_cli_commands" in hooks:
        commands = _call(plugin, "agentengine_cli_commands", problems)
        try:
            import click
        except ImportError:  # pragma: no cover - click is a core dependency
            commands = None
        problems.extend(
            f"agentengine_cli_commands returned {command!r}, not a named click command"
            for command in commands or ()
            if not isinstance(command, click.Command) or not command.name
        )
    return problems


def _call_strict(plugin: Any, hook: str, **kwargs: Any) -> Any:
    func = getattr(plugin, hook)
    params = _positional(func) or []
    return func(**{p.name: kwargs[p.name] for p in params})
