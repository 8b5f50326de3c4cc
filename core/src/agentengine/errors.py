"""The errors agentengine raises: every one is defined here, in one tree.

Every error derives from one base, so ``except AgentEngineError`` catches them all; a second
base (``ValueError``, ``LookupError``, ``KeyError``) is kept where callers rely on catching the
standard kind::

    AgentEngineError
    ├── InvalidContextError      (also a ValueError)  a context with a missing or placeholder id
    ├── ToolArgumentError        (also a ValueError)  arguments or run input not matching a schema
    ├── UnknownAgentError        (also a LookupError) no agent registered under that name
    ├── ToolError                                     a tool call failed, timed out or got bad args
    ├── EngineLimitError                              too many engines for one user
    ├── EngineClosedError                             the engine or factory was cleaned up
    │   └── DrainingError                             the factory is draining: retry elsewhere/later
    ├── BackendUnavailableError                       a service runs depend on is unreachable
    ├── StartPending                                  (internal, never escapes) extensions to start
    ├── PluginLoadError                               a plugin failed to load (strict mode)
    ├── PluginHookError                               a plugin's per-engine hook raised
    ├── RegistrationError        (also a ValueError)  a duplicate agent/tool name, a bad tool
    ├── ConfigError              (also a ValueError)  a bad configuration file or variable
    ├── ScopedResourceError                           a request-scoped resource failed to open
    ├── UnknownResourceError     (also a KeyError)    ``run.scope[name]`` of an undeclared name
    ├── UnknownToolsError        (also a LookupError) a framework agent's ``tools=`` matches nothing
    └── RelayedError                                  what a framework's own tool raised, carried
                                                      through the engine (a ``ToolError``'s cause)

Plugins derive their own errors from these (``agentengine_mcp`` raises ``ToolError``
subclasses). The modules that raise an error re-export it where it was first documented
(``agentengine.definitions.tools.ToolArgumentError``,
``agentengine.request_scope.ScopedResourceError``, ...); the ``agentengine`` package exports
them all.

Each message says what was wrong and what to do about it. ``describe_error`` is the one way
an exception is shown in events, logs and messages (``"Type: text"``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

__all__ = [
    "AgentEngineError",
    "BackendUnavailableError",
    "ConfigError",
    "DrainingError",
    "EngineClosedError",
    "EngineLimitError",
    "InvalidContextError",
    "PluginHookError",
    "PluginLoadError",
    "RegistrationError",
    "ScopedResourceError",
    "StartPending",
    "ToolArgumentError",
    "ToolError",
    "UnknownAgentError",
    "UnknownResourceError",
    "UnknownToolsError",
    "RelayedError",
    "describe_error",
]


class AgentEngineError(Exception):
    """Base class of every error agentengine raises."""


class InvalidContextError(AgentEngineError, ValueError):
    """A ``UserExecutionContext`` was given an empty, blank or placeholder value."""


class ToolArgumentError(AgentEngineError, ValueError):
    """Arguments did not match a tool's (or agent's) schema. The message lists every problem."""


class UnknownAgentError(AgentEngineError, LookupError):
    """No agent is registered under the requested name."""

    def __init__(self, name: str, available: list[str]) -> None:
        self.name = name
        self.available = sorted(available)
        names = ", ".join(self.available) or "none"
        super().__init__(
            f"no agent named {name!r} is registered; available agents: {names}. "
            "Register it with a plugin's agentengine_register_agents hook."
        )

    def __reduce__(self) -> tuple[type[UnknownAgentError], tuple[str, list[str]]]:
        return (type(self), (self.name, self.available))


class ToolError(AgentEngineError):
    """A tool call did not produce a result.

    Raised by ``RunContext.call_tool`` after the failure was reported in the ``tool_completed``
    event; ``message`` is the same text that event carried in ``error``.
    """

    def __init__(self, tool: str, status: str, message: str, tool_call_id: str = "") -> None:
        self.tool = tool
        self.status = status
        self.message = message
        self.tool_call_id = tool_call_id
        super().__init__(f"tool {tool!r} {status}: {message}")

    def __reduce__(self) -> tuple[type[ToolError], tuple[str, str, str, str]]:
        return (type(self), (self.tool, self.status, self.message, self.tool_call_id))


class EngineLimitError(AgentEngineError):
    """A user already has the maximum number of live engines."""


class EngineClosedError(AgentEngineError):
    """The engine (or its factory) was cleaned up and cannot be used again."""


class DrainingError(EngineClosedError):
    """The factory is shutting down: it lets the runs in flight finish and takes no new ones.

    Raised instead of starting a run (or creating an engine) while ``shutdown()`` drains. It is
    the caller's cue to answer "503 Service Unavailable" with ``Retry-After: retry_after``
    (``agentengine.DrainingErrorMiddleware`` does that for any ASGI app): the run belongs on
    another instance, or on this one once it restarted. ``retry_after`` is a whole number of
    seconds, at least 1: about when the drain ends.
    """

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = max(1, int(retry_after))


class BackendUnavailableError(AgentEngineError):
    """A service that runs or their records live on (``dependency``, e.g. ``"redis"``) cannot
    be reached right now: nothing was done, and the same call may succeed later.

    A server answers it "503 Service Unavailable" with ``Retry-After: retry_after`` (whole
    seconds, at least 1); the message says what is unreachable and what to do, and never holds
    an address or a secret.
    """

    def __init__(self, message: str, *, dependency: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.dependency = dependency
        self.retry_after = max(1, int(retry_after))


class StartPending(AgentEngineError):  # noqa: N818 - a signal, not an error
    """Internal signal, never raised to callers: the agent lookup of an engine made without
    awaiting (``ExecutionEngineFactory.create_for_user_sync``) raises it until the engine's
    extensions have started; the run entry points catch it, await ``start`` and go on."""

    def __init__(self, start: Callable[[], Awaitable[None]]) -> None:
        super().__init__("the engine's extensions have not started yet")
        self.start = start


class PluginLoadError(AgentEngineError):
    """A plugin could not be loaded or registered (raised in strict mode)."""


class PluginHookError(AgentEngineError):
    """A plugin's per-engine hook raised; engine creation fails with the plugin named."""


class RegistrationError(AgentEngineError, ValueError):
    """A plugin contributed something invalid: a duplicate name or a malformed tool/agent."""


class ConfigError(AgentEngineError, ValueError):
    """The configuration (file or environment) is invalid."""


class ScopedResourceError(AgentEngineError):
    """A scoped resource could not be opened (its factory raised or returned no context
    manager). The run sees this error where it asked for the resource."""


class UnknownResourceError(AgentEngineError, KeyError):
    """``run.scope[name]`` named a resource no plugin declared."""

    def __str__(self) -> str:  # KeyError would show the message's repr
        return str(self.args[0]) if self.args else ""


class UnknownToolsError(AgentEngineError, LookupError):
    """Names or globs in a framework agent's ``tools=`` that match no tool this run's user can
    call (``agentengine.frameworks.resolve_tools``)."""


class RelayedError(AgentEngineError):
    """What a framework's own tool raised (``original``), carried through the engine's call to
    be raised again (``agentengine.frameworks.FrameworkTool``); ``message`` describes it, and
    is what the call's ``tool_completed`` shows."""

    def __init__(self, message: str, original: BaseException) -> None:
        super().__init__(message)
        self.message = message
        self.original = original


def describe_error(exc: BaseException) -> str:
    """``"Type: text"`` of an exception (just the type without text); safe when ``str(exc)``
    itself raises, since it is used on the way to a run's terminal event. A ``RelayedError``
    is shown as the error it carries (its message, made by the adapter)."""
    if isinstance(exc, RelayedError):
        return exc.message
    name = type(exc).__name__
    try:
        text = str(exc)
    except BaseException:  # a broken __str__ must not break the terminal event
        return f"{name}: <str() of the exception raised>"
    return f"{name}: {text}" if text else name
