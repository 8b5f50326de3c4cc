"""The server's errors, and how each failure becomes an answer to the client.

::

    ApiError                      an answer {"error": code, "message": ..., **extra}: the HTTP
                                  body (with its status) or a WebSocket error frame
    BufferOverflowError           a connection fell more than its buffer behind (closed; the
                                  client resumes by cursor)
    InvalidCursorError            (ValueError) the event sink refused a stream's start cursor
    ServerClosingError            (agentengine.EngineClosedError) no new runs: shutting down

``too_many_connections`` is the answer (429, or a WebSocket closed with
``CLOSE_TOO_MANY_CONNECTIONS``) to a user opening more event streams than
``max_connections_per_user``.

``agentengine.BackendUnavailableError`` (a service runs live on, such as the Redis of the run
queue, is unreachable) is answered 503 ``unavailable`` with ``Retry-After`` (``unavailable``),
from every route and WebSocket frame.

``AuthError`` and ``SecretError`` (bad tokens, a bad JWT secret) live with the token checks in
``agentengine_server.auth``.

``CLOSE_*``: the WebSocket close codes the server uses.

Mappings, each the one place its answers are written: ``run_error`` (an exception raised while
starting a run), ``stream_error_item`` (what ended an event stream, for SSE and WebSocket
alike), ``describe_error`` (any exception as short, printable text).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agentengine import (
    AgentEngineError,
    BackendUnavailableError,
    EngineClosedError,
    EngineLimitError,
    InvalidContextError,
    ToolArgumentError,
    UnknownAgentError,
)

__all__ = [
    "CLOSE_GOING_AWAY",
    "CLOSE_INTERNAL",
    "CLOSE_INVALID_DATA",
    "CLOSE_POLICY",
    "CLOSE_TOO_BIG",
    "CLOSE_TOO_MANY_CONNECTIONS",
    "CLOSE_TRY_AGAIN_LATER",
    "RUN_START_ERRORS",
    "ApiError",
    "BufferOverflowError",
    "InvalidCursorError",
    "ServerClosingError",
    "describe_error",
    "run_error",
    "shutting_down",
    "stream_error_item",
    "too_many_connections",
    "unavailable",
]

#: WebSocket close codes used by the server (RFC 6455, section 7.4.1).
CLOSE_GOING_AWAY = 1001
CLOSE_INVALID_DATA = 1007
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011
CLOSE_TRY_AGAIN_LATER = 1013
#: Application code (RFC 6455 leaves 4000-4999 to applications): HTTP 429 as a close code, the
#: user holds ``max_connections_per_user`` streams already.
CLOSE_TOO_MANY_CONNECTIONS = 4429


class ApiError(AgentEngineError):
    """An answer to a client that could not be served: ``{"error": code, "message": ...,
    **extra}``, sent as the HTTP body with ``status`` and ``headers``, or as a WebSocket error
    frame (``frame()``, where the status plays no part)."""

    def __init__(
        self,
        http_status: int,
        code: str,
        message: str,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = http_status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.extra = extra

    def body(self) -> dict[str, Any]:
        """The JSON body."""
        return {"error": self.code, "message": self.message, **self.extra}

    def frame(self) -> dict[str, Any]:
        """The WebSocket error frame."""
        return {"type": "error", **self.body()}


class BufferOverflowError(AgentEngineError):
    """The client fell more than the buffer's capacity behind."""


class InvalidCursorError(AgentEngineError, ValueError):
    """The sink refused the cursor a stream was to start after (raised before any item)."""


class ServerClosingError(EngineClosedError):
    """The server is shutting down and takes no new runs."""


def shutting_down(retry_after: int = 1) -> ApiError:
    """503 ``shutting_down`` with ``Retry-After``: the server takes no new runs or streams."""
    return ApiError(
        503,
        "shutting_down",
        "the server is shutting down; retry later",
        headers={"Retry-After": str(max(1, retry_after))},
    )


def too_many_connections(limit: int) -> ApiError:
    """429 ``too_many_connections`` with ``limit`` and ``Retry-After``: the user holds
    ``limit`` event streams (WebSocket and SSE) already; a new one needs another closed."""
    return ApiError(
        429,
        "too_many_connections",
        f"too many connections for this user (max_connections_per_user = {limit}); "
        "close one and retry",
        headers={"Retry-After": "5"},
        limit=limit,
    )


def unavailable(exc: BackendUnavailableError) -> ApiError:
    """503 ``unavailable`` with ``Retry-After``: a service runs live on is unreachable (the
    body names it, ``dependency``, and says what to do). Nothing was done; retrying is safe."""
    return ApiError(
        503,
        "unavailable",
        str(exc),
        headers={"Retry-After": str(exc.retry_after)},
        dependency=exc.dependency,
    )


#: What starting a run may raise that is the client's to hear about (``run_error``).
RUN_START_ERRORS = (
    UnknownAgentError,
    ToolArgumentError,
    InvalidContextError,
    EngineLimitError,
    EngineClosedError,
    BackendUnavailableError,
)


def run_error(exc: Exception) -> ApiError:
    """The API error for an exception raised while starting a run (one of
    ``RUN_START_ERRORS``; anything else is raised again)."""
    if isinstance(exc, UnknownAgentError):
        return ApiError(
            404,
            "unknown_agent",
            f"no agent named {exc.name!r}; available agents: {', '.join(exc.available) or 'none'}",
            available=exc.available,
        )
    if isinstance(exc, ToolArgumentError | InvalidContextError):
        return ApiError(422, "invalid_input", str(exc))
    if isinstance(exc, EngineLimitError):
        return ApiError(
            429,
            "too_many_runs",
            "too many runs in flight for this user; wait for one to finish (or cancel one) "
            "and retry",
            headers={"Retry-After": "1"},
        )
    if isinstance(exc, EngineClosedError):  # a DrainingError says when to retry
        return shutting_down(getattr(exc, "retry_after", 1))
    if isinstance(exc, BackendUnavailableError):
        return unavailable(exc)
    raise exc


def stream_error_item(exc: BaseException) -> dict[str, Any]:
    """The error item a stream ends with when ``exc`` ended it: ``invalid_cursor`` for a
    refused start cursor, ``stream_failed`` (reconnect to resume) for anything else. SSE sends
    it as an ``error`` event, the WebSocket as an error frame."""
    if isinstance(exc, InvalidCursorError):
        code = "invalid_cursor"
        message = describe_error(exc).removeprefix("InvalidCursorError: ")
    else:
        code = "stream_failed"
        message = f"the event stream failed ({describe_error(exc)}); reconnect to resume"
    return {"type": "error", "error": code, "message": message}


def describe_error(exc: BaseException, limit: int = 200) -> str:
    """``Type: message`` of ``exc``, safe to send and log whatever the exception holds: at
    most ``limit`` characters, valid UTF-8, and never raising (a ``__str__`` may)."""
    try:
        message = str(exc)
    except Exception:
        message = "<message not printable>"
    message = message.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(message) > limit:
        message = message[:limit] + "…"
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
