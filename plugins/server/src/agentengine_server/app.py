"""The Starlette application: HTTP API, Server-Sent Events, WebSocket and the web page.

``create_app(factory, secret=..., dev=...)`` builds it around one ``ExecutionEngineFactory``;
``agentengine serve`` runs it under uvicorn. Every request and connection is authenticated with
a bearer token (see ``agentengine_server.auth``) and only ever sees its own user's runs and
events.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import math
import secrets
import time
from collections.abc import AsyncIterator, Mapping
from importlib import resources
from typing import Any

import structlog
from agentengine import (
    EngineClosedError,
    EngineLimitError,
    ExecutionEngineFactory,
    InvalidContextError,
    ToolArgumentError,
    UnknownAgentError,
    UserExecutionContext,
)
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from agentengine_server.auth import AuthError, TokenClaims, TokenVerifier, bearer_token
from agentengine_server.inputs import InputError, check_json, parse_json
from agentengine_server.memory import resident_bytes, trim_heap
from agentengine_server.metrics import ServerMetrics, render_prometheus
from agentengine_server.openapi import openapi_document
from agentengine_server.runs import RunManager, RunRecord
from agentengine_server.settings import ServerSettings
from agentengine_server.streaming import (
    BufferOverflowError,
    EventPump,
    Frame,
    FrameEncoder,
    InvalidCursorError,
    StreamHub,
    describe_error,
)

__all__ = ["ApiError", "ServerState", "create_app"]

_log = structlog.get_logger("agentengine_server")

#: WebSocket close codes used by the server.
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_INTERNAL = 1011
CLOSE_TRY_AGAIN_LATER = 1013
_CLIENT_FRAME_TYPES = ("run", "cancel", "resume", "auth")
_STATIC = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


class ApiError(Exception):
    """An HTTP error answered as ``{"error": code, "message": ..., **extra}``."""

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


def run_error(exc: Exception) -> ApiError:
    """The API error for an exception raised while starting a run."""
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
    if isinstance(exc, EngineClosedError):
        return ApiError(503, "shutting_down", "the server is shutting down; retry later")
    raise exc


class ServerState:
    """Everything the routes share: the factory, runs, auth, counters, live connections."""

    def __init__(
        self,
        factory: ExecutionEngineFactory,
        verifier: TokenVerifier,
        settings: ServerSettings,
        *,
        dev: bool,
    ) -> None:
        self.factory = factory
        self.verifier = verifier
        self.settings = settings
        self.dev = dev
        self.runs = RunManager(
            factory,
            finished_runs_kept=settings.finished_runs_kept,
            max_finished_runs=settings.max_finished_runs,
            finished_runs_max_bytes=settings.finished_runs_max_bytes,
            finished_runs_ttl=settings.finished_runs_ttl,
        )
        self.metrics = ServerMetrics()
        self.encoder = FrameEncoder(max_bytes=settings.frame_cache_bytes)
        self.streams = StreamHub(
            factory.events,
            self.encoder,
            capacity=settings.send_buffer,
            capacity_bytes=settings.send_buffer_bytes,
            stall_timeout=settings.slow_client_timeout,
        )
        self.connections: set[_Connection] = set()
        self.closing = False
        self._shutdown_done: asyncio.Event | None = None
        self._static = _load_static()

    # -- auth ---------------------------------------------------------------------------------

    def authenticate(self, token: str | None) -> str:
        """The user id of ``token``; ``ApiError`` 401 otherwise."""
        return self.token_claims(token).user_id

    def token_claims(self, token: str | None) -> TokenClaims:
        """The claims of ``token`` (user id, expiry); ``ApiError`` 401 otherwise."""
        try:
            return self.verifier.claims(token)
        except AuthError as exc:
            self.metrics.auth_failures += 1
            raise ApiError(
                401,
                "unauthorized",
                str(exc),
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            ) from None

    def request_user(self, request: Request, *, allow_query: bool = False) -> str:
        """The caller of an HTTP request (``Authorization: Bearer``; ``?token=`` if allowed)."""
        return self.request_claims(request, allow_query=allow_query).user_id

    def request_claims(self, request: Request, *, allow_query: bool = False) -> TokenClaims:
        """The verified token claims of an HTTP request's caller."""
        token = bearer_token(request.headers.get("authorization"))
        if token is None and allow_query:
            token = request.query_params.get("token")
        return self.token_claims(token)

    # -- streams ------------------------------------------------------------------------------

    def start_cursor(self, user_id: str) -> str | None:
        """Where a new stream without a resume cursor starts: after the user's newest event
        (only live events follow), or everything retained when the sink cannot tell."""
        latest = getattr(self.factory.events, "latest_cursor", None)
        return latest(user_id) if callable(latest) else None

    def pump(self, user_id: str, after: str | None, on_overflow: Any = None) -> EventPump:
        """A started pump of ``user_id``'s events after ``after``."""
        return self.streams.open(user_id, after, on_overflow)

    def delivered(self, transport: str, frame: Frame) -> None:
        """Count one frame handed to a client."""
        self.metrics.events_delivered[transport] += 1
        if frame.gap:
            self.metrics.gaps_delivered += 1

    # -- housekeeping -------------------------------------------------------------------------

    async def housekeeping(self) -> None:
        """Forever, every ``RunManager.sweep_interval`` seconds: forget the users idle past
        ``finished_runs_ttl`` (``RunManager.sweep``), then, if the server did anything since
        the last time (``trim_memory``), return freed heap memory to the operating system
        (``memory.trim_heap``): so that RSS comes down after a burst, and again once the TTL
        passed, instead of staying at its peak."""
        last: tuple[int, ...] | None = None
        while True:
            await asyncio.sleep(self.runs.sweep_interval)
            self.runs.sweep()
            if not self.settings.trim_memory:
                continue
            mark = self._activity()
            if mark != last:
                last = mark
                trim_heap()

    def _activity(self) -> tuple[int, ...]:
        """Counters that move whenever the server allocates or frees much: runs started and
        ended, records and users of the run table, frames delivered."""
        factory = self.factory.get_factory_metrics()
        return (
            self.metrics.runs_started,
            int(factory.get("runs", 0)),
            self.runs.finished_count,
            len(self.runs.user_ids()),
            sum(self.metrics.events_delivered.values()),
        )

    def memory_figures(self) -> dict[str, float]:
        """What the server holds, by bound, in bytes (for ``GET /metrics``)."""
        figures: dict[str, float] = {
            "finished_runs": self.runs.finished_count,
            "finished_runs_bytes": self.runs.finished_bytes,
            "run_table_users": len(self.runs.user_ids()),
            "frame_cache_bytes": self.encoder.retained_bytes,
        }
        retained = getattr(self.factory.events, "retained_bytes", None)
        if isinstance(retained, int):
            figures["events_retained_bytes"] = retained
        rss = resident_bytes()
        if rss is not None:
            figures["resident_bytes"] = rss
        return figures

    # -- shutdown -----------------------------------------------------------------------------

    async def shutdown(self) -> None:
        """Take no new runs, drain runs within the factory's drain deadline (leftovers are
        cancelled and still end with their terminal event), let every connection send what it
        has, then close each with a close frame. Idempotent; concurrent callers all wait."""
        if self._shutdown_done is not None:
            await self._shutdown_done.wait()
            return
        self._shutdown_done = asyncio.Event()
        self.closing = True
        self.runs.closing = True
        started = time.monotonic()
        _log.info(
            "shutting down: draining runs",
            runs=self.runs.active,
            drain_timeout=self.factory.engine_settings.drain_timeout,
            connections=len(self.connections),
        )
        try:
            # Draining ends with the sink closing: every stream then ends after its last event.
            await self.factory.shutdown()
            await self.runs.wait_finished()
            waiting = [c.finished.wait() for c in list(self.connections)]
            if waiting:
                _, pending = await asyncio.wait(
                    [asyncio.ensure_future(w) for w in waiting],
                    timeout=self.settings.shutdown_flush_timeout,
                )
                for task in pending:
                    task.cancel()
                for conn in list(self.connections):
                    conn.abort()
            _log.info("shutdown complete", seconds=round(time.monotonic() - started, 3))
        finally:
            self._shutdown_done.set()

    # -- static -------------------------------------------------------------------------------

    def static(self, name: str) -> bytes | None:
        """A file of the web page."""
        return self._static.get(name)


def _load_static() -> dict[str, bytes]:
    root = resources.files("agentengine_server") / "static"
    return {name: (root / name).read_bytes() for name in ("index.html", *_STATIC)}


# -- request helpers ---------------------------------------------------------------------------


def _state(conn: Request | WebSocket) -> ServerState:
    state: ServerState = conn.app.state.agentengine
    return state


async def _json_body(request: Request, limit: int) -> Any:
    """The request's JSON body, checked at the door (see ``_read_json``)."""
    return (await _read_json(request, limit))[0]


async def _read_json(request: Request, limit: int) -> tuple[Any, dict[str, int]]:
    """The request's JSON body and the compact JSON size of each of its top-level members.

    Answers 413 over ``limit`` bytes, 400 for what is not JSON, 422 for nesting past
    ``max_json_depth`` or a string that is not valid Unicode (``inputs.check_json``).
    """
    declared = request.headers.get("content-length")
    # isascii: str.isdigit() also accepts digits int() refuses ("²"); the length check keeps
    # int() under its 4,300-digit limit.
    if (
        declared is not None
        and declared.isascii()
        and declared.isdigit()
        and (len(declared) > 18 or int(declared) > limit)
    ):
        raise ApiError(413, "body_too_large", f"the request body is over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "body_too_large", f"the request body is over {limit} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw:
        raise ApiError(400, "invalid_json", "the request body is empty; send a JSON object")
    depth = _state(request).settings.max_json_depth
    data = parse_json(raw, what="the request body", max_depth=depth)
    return data, check_json(data, max_depth=depth)


def _check_input_size(settings: ServerSettings, sizes: dict[str, int]) -> None:
    """413 when the run input is over ``max_input_bytes``."""
    size = sizes.get("input", 0)
    limit = settings.max_input_bytes
    if size > limit:
        raise ApiError(
            413,
            "input_too_large",
            f"the run input is {size} bytes as JSON, over the limit of {limit} bytes "
            "(max_input_bytes); send less, or pass large data by reference",
            limit=limit,
        )


def _check_fields(data: Any, allowed: dict[str, tuple[type, ...]], required: set[str]) -> None:
    """422 unless ``data`` is an object with the required keys, known keys only, right types."""
    if not isinstance(data, dict):
        raise ApiError(422, "invalid_request", f"expected a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ApiError(
            422,
            "invalid_request",
            f"unknown field(s) {', '.join(map(repr, unknown))}; allowed: "
            f"{', '.join(map(repr, allowed))}",
        )
    missing = sorted(required - set(data))
    if missing:
        raise ApiError(422, "invalid_request", f"missing field(s): {', '.join(missing)}")
    for key, types in allowed.items():
        if key in data and data[key] is not None and not isinstance(data[key], types):
            names = " or ".join("an object" if t is dict else "a string" for t in types)
            raise ApiError(
                422,
                "invalid_request",
                f"field {key!r} must be {names}, got {type(data[key]).__name__}",
            )


_RUN_FIELDS: dict[str, tuple[type, ...]] = {
    "agent": (str,),
    "input": (dict,),
    "thread_id": (str,),
}


# -- HTTP routes -------------------------------------------------------------------------------


async def index(request: Request) -> Response:
    """The web page."""
    body = _state(request).static("index.html") or b""
    return Response(body, media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)


async def static_file(request: Request) -> Response:
    """The page's script and style sheet."""
    name = request.path_params["name"]
    body = _state(request).static(name)
    if name not in _STATIC or body is None:
        raise ApiError(404, "not_found", f"no static file {name!r}")
    return Response(body, media_type=_STATIC[name], headers=_PAGE_HEADERS)


async def healthz(request: Request) -> Response:
    """Liveness and readiness: 200 while serving, 503 once shutting down."""
    state = _state(request)
    if state.closing:
        return JSONResponse({"status": "shutting_down", "dev": state.dev}, status_code=503)
    return JSONResponse({"status": "ok", "dev": state.dev})


async def metrics(request: Request) -> Response:
    """Prometheus text."""
    state = _state(request)
    text = render_prometheus(
        state.metrics, state.factory.get_factory_metrics(), state.memory_figures()
    )
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")


async def openapi(request: Request) -> Response:
    """The OpenAPI document of this API."""
    return JSONResponse(openapi_document(dev=_state(request).dev))


async def dev_token(request: Request) -> Response:
    """``--dev`` only: a token for any user name, so the page and tests need no identity
    provider. Signed with the dev server's own key and marked as a dev token: never valid on a
    production server. JSON bodies only: a web page can send ``text/plain`` cross-origin
    without asking, but ``application/json`` needs a CORS preflight, which this server never
    grants."""
    state = _state(request)
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json":
        raise ApiError(
            415,
            "unsupported_media_type",
            f"send the body as application/json, not {media_type or 'without a Content-Type'}",
        )
    data = await _json_body(request, state.settings.max_body_bytes)
    _check_fields(data, {"user": (str,)}, {"user"})
    user = data["user"]
    try:
        UserExecutionContext(user_id=user)
    except InvalidContextError as exc:
        raise ApiError(422, "invalid_user", str(exc)) from None
    ttl = state.settings.dev_token_ttl
    return JSONResponse(
        {"token": state.verifier.issue_dev(user, ttl), "user": user, "expires_in": int(ttl)}
    )


async def list_agents(request: Request) -> Response:
    """The agents a user can run, with their input schemas."""
    state = _state(request)
    state.request_user(request)
    agents = [
        {"name": a.name, "description": a.description, "input_schema": a.input_schema}
        for a in sorted(state.factory.agents, key=lambda a: a.name)
    ]
    return JSONResponse({"agents": agents})


async def start_run(request: Request) -> Response:
    """``POST /v1/runs``: start a run for the caller; 202 with its id."""
    state = _state(request)
    user = state.request_user(request)
    data, sizes = await _read_json(request, state.settings.max_body_bytes)
    _check_fields(data, _RUN_FIELDS, {"agent"})
    _check_input_size(state.settings, sizes)
    try:
        record = await state.runs.start(
            user, data["agent"], data.get("input"), thread_id=data.get("thread_id")
        )
    except AgentErrors as exc:
        raise run_error(exc) from None
    state.metrics.runs_started += 1
    return JSONResponse(
        {"run_id": record.run_id, "thread_id": record.thread_id, "status": record.status},
        status_code=202,
        headers={"Location": f"/v1/runs/{record.run_id}"},
    )


AgentErrors = (
    UnknownAgentError,
    ToolArgumentError,
    InvalidContextError,
    EngineLimitError,
    EngineClosedError,
)


def _own_run(state: ServerState, user: str, run_id: str) -> RunRecord:
    record = state.runs.get(user, run_id)
    if record is None:
        # Another user's run is answered exactly like a missing one.
        raise ApiError(404, "run_not_found", f"no run {run_id!r}")
    return record


async def list_runs(request: Request) -> Response:
    """The caller's runs (in flight and recently finished), oldest first."""
    state = _state(request)
    user = state.request_user(request)
    return JSONResponse({"runs": [r.to_wire() for r in state.runs.list(user)]})


async def get_run(request: Request) -> Response:
    """Status, output and error of one of the caller's runs."""
    state = _state(request)
    user = state.request_user(request)
    return JSONResponse(_own_run(state, user, request.path_params["run_id"]).to_wire())


async def cancel_run(request: Request) -> Response:
    """Cancel one of the caller's runs; answers its final state (409 if it had already
    ended)."""
    state = _state(request)
    user = state.request_user(request)
    run_id = request.path_params["run_id"]
    record = _own_run(state, user, run_id)
    if record.finished_at is not None:
        raise ApiError(
            409,
            "run_finished",
            f"run {run_id!r} already ended with status {record.status!r}",
            status=record.status,
        )
    await state.runs.cancel(user, run_id)
    return JSONResponse(record.to_wire())


async def sse_events(request: Request) -> Response:
    """``GET /v1/events``: the caller's events as Server-Sent Events, ``id:`` = cursor."""
    state = _state(request)
    claims = state.request_claims(request, allow_query=True)
    user = claims.user_id
    if state.closing:
        raise ApiError(503, "shutting_down", "the server is shutting down; retry later")
    after = request.headers.get("last-event-id") or request.query_params.get("after")
    if not after:
        after = state.start_cursor(user)
    pump = state.pump(user, after)
    return StreamingResponse(
        _sse_stream(state, user, pump, claims.expires_at),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _sse_stream(
    state: ServerState, user: str, pump: EventPump, expires_at: float
) -> AsyncIterator[str]:
    counters = state.metrics
    counters.clients_connected["sse"] += 1
    keepalive = state.settings.keepalive_interval
    try:
        # `retry` tells EventSource how soon to reconnect (it then sends Last-Event-ID).
        yield "retry: 1000\n: connected\n\n"
        while True:
            # Nothing goes out on an expired token: the stream ends at the token's expiry with
            # a `token_expired` error item, and the client reconnects with a new token (its
            # Last-Event-ID resumes where it was).
            left = expires_at - time.time()
            if left <= 0:
                yield _SSE_TOKEN_EXPIRED
                return
            try:
                async with asyncio.timeout(min(keepalive, left)):
                    frame = await pump.next()
            except TimeoutError:
                if time.time() < expires_at:
                    yield ": keepalive\n\n"
                continue
            except BufferOverflowError:
                counters.slow_client_closes += 1
                _log.info("closing a slow SSE client; it resumes with Last-Event-ID", user_id=user)
                return
            if frame is None:
                if pump.error is not None:
                    yield _sse_error(pump.error)
                return
            if time.time() >= expires_at:
                # The wait ended past the expiry (a busy loop): this frame is not sent; the
                # client gets it again when it resumes from its Last-Event-ID.
                yield _SSE_TOKEN_EXPIRED
                return
            if frame.failed:
                yield f"id: {frame.cursor}\nevent: error\ndata: {frame.text}\n\n"
            elif frame.cursor is not None:
                yield f"id: {frame.cursor}\ndata: {frame.text}\n\n"
            else:
                yield f"data: {frame.text}\n\n"
            state.delivered("sse", frame)
    finally:
        counters.clients_connected["sse"] -= 1
        await pump.stop()


_SSE_TOKEN_EXPIRED = "event: error\ndata: {}\n\n".format(
    json.dumps(
        {
            "type": "error",
            "error": "token_expired",
            "message": "token expired: reconnect with a new token (Last-Event-ID resumes)",
        }
    )
)


def _sse_error(exc: BaseException) -> str:
    data = json.dumps(
        {"type": "error", "error": _stream_error_code(exc), "message": _stream_error_message(exc)}
    )
    return f"event: error\ndata: {data}\n\n"


def _stream_error_code(exc: BaseException) -> str:
    """The error code of what ended a stream: ``invalid_cursor`` only for a refused cursor."""
    return "invalid_cursor" if isinstance(exc, InvalidCursorError) else "stream_failed"


def _stream_error_message(exc: BaseException) -> str:
    if isinstance(exc, InvalidCursorError):
        return describe_error(exc).removeprefix("InvalidCursorError: ")
    return f"the event stream failed ({describe_error(exc)}); reconnect to resume"


# -- WebSocket ---------------------------------------------------------------------------------


def _ws_token(websocket: WebSocket) -> tuple[str | None, str | None]:
    """(token, subprotocol to accept): ``Sec-WebSocket-Protocol: bearer, <token>`` or
    ``?token=``."""
    offered = [
        p.strip()
        for header in websocket.headers.getlist("sec-websocket-protocol")
        for p in header.split(",")
        if p.strip()
    ]
    if len(offered) >= 2 and offered[0].lower() == "bearer":
        return offered[1], offered[0]
    return websocket.query_params.get("token"), None


async def ws_endpoint(websocket: WebSocket) -> None:
    """``WS /v1/ws``: the caller's events as JSON text frames; runs, cancels and resumes."""
    state = _state(websocket)
    token, subprotocol = _ws_token(websocket)
    try:
        claims = state.verifier.claims(token)
    except AuthError as exc:
        state.metrics.auth_failures += 1
        _log.info("websocket refused", reason=str(exc))
        # Closing before accepting answers the handshake with HTTP 403.
        await websocket.close(code=CLOSE_POLICY)
        return
    if state.closing:
        await websocket.close(code=CLOSE_TRY_AGAIN_LATER)
        return
    user = claims.user_id
    after = websocket.query_params.get("after") or state.start_cursor(user)
    await websocket.accept(subprotocol=subprotocol)
    conn = _Connection(state, websocket, user, after)
    conn.expires_at = claims.expires_at
    state.connections.add(conn)
    state.metrics.clients_connected["ws"] += 1
    try:
        await conn.serve()
    finally:
        state.metrics.clients_connected["ws"] -= 1
        state.connections.discard(conn)
        conn.finished.set()


class _Connection:
    """One WebSocket: a sender task streaming the pump, a receiver task handling client frames."""

    def __init__(self, state: ServerState, ws: WebSocket, user: str, after: str | None) -> None:
        self.state = state
        self.ws = ws
        self.user = user
        #: The stream continues after this cursor (updated with each frame sent).
        self.position = after
        self.finished = asyncio.Event()
        self._overflowed = False
        self._resuming = False
        self._resume_fallback: str | None = None
        self._dead = False
        self._inflight: asyncio.Task[None] | None = None
        self._receiver: asyncio.Task[None] | None = None
        #: When the connection's token expires (``time.time()``); an ``auth`` frame moves it.
        self.expires_at = math.inf
        self._other_user_token = asyncio.Event()
        self.pump = self._new_pump(after)
        self.sender = asyncio.get_running_loop().create_task(self._send_loop(None))

    def _new_pump(self, after: str | None) -> EventPump:
        pump: EventPump | None = None

        def on_overflow() -> None:
            # The sender may be stuck in a send to the slow client: interrupt it.
            if pump is not None and pump is self.pump:
                self._overflowed = True
                self.sender.cancel()

        pump = self.state.pump(self.user, after, on_overflow)
        return pump

    def abort(self) -> None:
        """Stop both tasks (shutdown stragglers)."""
        self.sender.cancel()
        if self._receiver is not None:
            self._receiver.cancel()

    async def _send(self, data: dict[str, Any]) -> None:
        if self.ws.application_state is WebSocketState.CONNECTED:
            await self.ws.send_text(json.dumps(data))

    async def _send_loop(self, ack: dict[str, Any] | None) -> None:
        pump = self.pump
        if ack is not None:
            await self._send(ack)
        send_text = self.ws.send_text
        # From here on the fan-out may send frames itself (see `_send_direct`); the ack above
        # goes first.
        pump.direct = self._send_direct
        while True:
            frame = pump.take()
            if frame is None:
                if pump.drained:
                    return
                await pump.wait()
                continue
            pump.busy = True
            try:
                await send_text(frame.text)
            finally:
                pump.busy = False
            self._sent(frame)

    def _sent(self, frame: Frame) -> None:
        if frame.cursor is not None:
            self.position = frame.cursor
            self._resuming = False
        counters = self.state.metrics
        counters.events_delivered["ws"] += 1
        if frame.gap:
            counters.gaps_delivered += 1

    def _send_direct(self, frame: Frame) -> None:
        """Send ``frame`` now, from the fan-out's task (called only when nothing is queued or
        in flight). The send runs until it first has to wait; with uvicorn that is only when
        the client is not reading. Then a task finishes it while later frames queue up, so the
        fan-out never waits for a client. This saves a task switch per frame and client."""
        if self._dead:
            return
        coro = self.ws.send_text(frame.text)
        try:
            waiting = coro.send(None)
        except StopIteration:
            self._sent(frame)
            return
        except Exception as exc:
            self._direct_failed(exc)
            return
        pump = self.pump
        pump.busy = True
        self._inflight = asyncio.get_running_loop().create_task(
            self._finish_direct(coro, waiting, frame, pump)
        )

    async def _finish_direct(self, coro: Any, waiting: Any, frame: Frame, pump: EventPump) -> None:
        try:
            await finish_coroutine(coro, waiting)
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                self._direct_failed(exc)
            raise
        else:
            self._sent(frame)
        finally:
            pump.idle()

    def _direct_failed(self, exc: BaseException) -> None:
        # The client is gone (or the socket broke): end the connection like a failed send.
        self._dead = True
        if not isinstance(exc, WebSocketDisconnect | OSError | RuntimeError):
            _log.error("websocket send failed", user_id=self.user, error=repr(exc))
        self.sender.cancel()

    async def _restart(self, after: str | None, ack: dict[str, Any] | None) -> None:
        old_sender, old_pump = self.sender, self.pump
        # Cancel first: the old sender stops before the new one sends its first frame. Then
        # swap synchronously, so that `serve` never sees the old sender as the current one.
        old_pump.direct = None
        old_sender.cancel()
        # A frame of the old stream still in flight must not follow the ack: it is cancelled
        # before it was written (the stream restarts from a cursor anyway).
        inflight, self._inflight = self._inflight, None
        if inflight is not None:
            inflight.cancel()
        self._overflowed = False
        self.pump = self._new_pump(after)
        self.sender = asyncio.get_running_loop().create_task(self._send_loop(ack))
        await asyncio.gather(old_sender, *filter(None, [inflight]), return_exceptions=True)
        await old_pump.stop()

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        self._receiver = loop.create_task(self._receive_loop())
        receiver = self._receiver
        token_watch = loop.create_task(self._watch_token())
        try:
            while True:
                sender = self.sender
                await asyncio.wait(
                    {sender, receiver, token_watch}, return_when=asyncio.FIRST_COMPLETED
                )
                if token_watch.done():
                    await self._close_unauthorized(token_watch.result())
                    return
                if receiver.done():
                    return  # the client went away (or broke the protocol, e.g. 1009)
                if sender is not self.sender or not sender.done():
                    continue  # a resume replaced the sender
                if await self._sender_finished(sender):
                    return
        finally:
            token_watch.cancel()
            receiver.cancel()
            self.sender.cancel()
            await self.pump.stop()
            if self._inflight is not None:
                self._inflight.cancel()
            await asyncio.gather(
                receiver,
                self.sender,
                token_watch,
                *filter(None, [self._inflight]),
                return_exceptions=True,
            )

    # -- the token of the connection ------------------------------------------------------------

    async def _watch_token(self) -> str:
        """Return, with the close reason, once the connection's token is no longer good: it
        expired (``expires_at`` may move on while waiting: an ``auth`` frame refreshed it), or
        the client sent a token of another user."""
        while True:
            left = self.expires_at - time.time()
            if left <= 0:
                return "token expired: reconnect with a new token (or refresh it before expiry)"
            try:
                async with asyncio.timeout(min(left, 86400.0)):
                    await self._other_user_token.wait()
            except TimeoutError:
                continue
            return "token of another user: a connection cannot change users"

    async def _close_unauthorized(self, reason: str) -> None:
        """Stop streaming at once, then close with 1008 (policy) and ``reason``."""
        _log.info("closing a websocket: its token is no longer good", user_id=self.user)
        self.pump.direct = None
        self.sender.cancel()
        if self._inflight is not None:
            self._inflight.cancel()
        await self._close(CLOSE_POLICY, reason)

    def _token_expired(self) -> bool:
        return time.time() >= self.expires_at

    def _refresh_token(self, data: dict[str, Any]) -> dict[str, Any]:
        """``{"type": "auth", "token": ...}``: go on with a new token of the same user."""
        token = data.get("token")
        if token is not None and not isinstance(token, str):
            raise _FrameError("invalid_frame", "an auth frame needs 'token' (a string)")
        try:
            claims = self.state.verifier.claims(token)
        except AuthError as exc:
            self.state.metrics.auth_failures += 1
            raise _FrameError(
                "unauthorized",
                f"{exc}; the connection keeps its current token until that one expires",
            ) from None
        if claims.user_id != self.user:
            self.state.metrics.auth_failures += 1
            self._other_user_token.set()
            raise _FrameError(
                "unauthorized",
                f"the token is not for {self.user!r}, the user of this connection; a "
                "connection cannot change users: open a new one (closing this one)",
            )
        self.expires_at = claims.expires_at
        return {"type": "auth_ok", "user": self.user, "expires_at": claims.expires_at}

    async def _sender_finished(self, sender: asyncio.Task[None]) -> bool:
        """Handle a finished sender; True when the connection is over."""
        if self._overflowed or (
            not sender.cancelled() and isinstance(sender.exception(), BufferOverflowError)
        ):
            self.state.metrics.slow_client_closes += 1
            reason = f"slow client: resume after cursor {self.position}"[:120]
            _log.info("closing a slow websocket client", user_id=self.user, after=self.position)
            await self._close(CLOSE_TRY_AGAIN_LATER, reason)
            return True
        if sender.cancelled():
            return True
        exc = sender.exception()
        if exc is not None:
            if isinstance(exc, WebSocketDisconnect | OSError | RuntimeError):
                return True
            _log.error("websocket sender failed", user_id=self.user, error=repr(exc))
            await self._close(CLOSE_INTERNAL, "internal error")
            return True
        error = self.pump.error
        if error is not None:
            bad_cursor = isinstance(error, InvalidCursorError)
            await self._send(_error_frame(_stream_error_code(error), _stream_error_message(error)))
            if self._resuming and bad_cursor:
                # A bad resume cursor: carry on from where the stream was.
                self._resuming = False
                await self._restart(self._resume_fallback, None)
                return False
            if bad_cursor:
                await self._close(CLOSE_POLICY, "invalid cursor")
            else:
                await self._close(CLOSE_INTERNAL, "event stream failed; reconnect to resume")
            return True
        # The sink closed: the server is shutting down and every event was sent.
        await self._close(CLOSE_GOING_AWAY, "server shutting down")
        return True

    async def _close(self, code: int, reason: str) -> None:
        if ws_open(self.ws):
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.state.settings.shutdown_flush_timeout or 1.0):
                    await self.ws.close(code=code, reason=reason)

    async def _receive_loop(self) -> None:
        ws = self.ws
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            if self._token_expired():
                # Refused even before the expiry close goes out: nothing runs on an old token.
                await self._send(
                    _error_frame(
                        "token_expired",
                        "the connection's token expired: the frame was not handled; reconnect "
                        "with a new token",
                    )
                )
                continue
            text = message.get("text")
            if text is None:
                await self._send(
                    _error_frame("invalid_frame", "binary frames are not accepted; send JSON text")
                )
                continue
            await self._handle(text)

    async def _handle(self, text: str) -> None:
        """Answer one client frame. Total: whatever the frame holds, the client gets an answer
        frame and the connection stays open."""
        try:
            await self._dispatch(text)
        except Exception as exc:
            # A bug, not the client's fault: say so, log it, and keep the connection.
            _log.exception(
                "websocket frame failed", user_id=self.user, error_type=type(exc).__name__
            )
            await self._send(
                _error_frame("internal_error", "the frame could not be handled; retry later")
            )

    async def _dispatch(self, text: str) -> None:
        depth = self.state.settings.max_json_depth
        try:
            data = parse_json(text, what="the frame", max_depth=depth)
            sizes = check_json(data, max_depth=depth)
        except InputError as exc:
            await self._send(_error_frame(exc.code, exc.message, **exc.extra))
            return
        if not isinstance(data, dict):
            await self._send(
                _error_frame("invalid_frame", f"expected a JSON object, got {type(data).__name__}")
            )
            return
        ref = data.get("id")
        kind = data.get("type")
        try:
            if kind == "run":
                _check_input_size(self.state.settings, sizes)
                reply = await self._run(data)
            elif kind == "cancel":
                reply = await self._cancel(data)
            elif kind == "resume":
                await self._resume(data, ref)
                return
            elif kind == "auth":
                reply = self._refresh_token(data)
            else:
                raise _FrameError(
                    "invalid_frame",
                    f"unknown frame type {kind!r}; send one of: {', '.join(_CLIENT_FRAME_TYPES)}",
                )
        except _FrameError as exc:
            reply = _error_frame(exc.code, exc.message, **exc.extra)
        except ApiError as exc:
            reply = {"type": "error", **exc.body()}
        if ref is not None:
            reply["id"] = ref
        await self._send(reply)

    async def _run(self, data: dict[str, Any]) -> dict[str, Any]:
        agent = data.get("agent")
        if not isinstance(agent, str):
            raise _FrameError("invalid_frame", "a run frame needs 'agent' (a string)")
        run_input = data.get("input")
        if run_input is not None and not isinstance(run_input, dict):
            raise _FrameError("invalid_input", "'input' must be an object")
        thread_id = data.get("thread_id")
        if thread_id is not None and not isinstance(thread_id, str):
            raise _FrameError("invalid_frame", "'thread_id' must be a string")
        try:
            record = await self.state.runs.start(self.user, agent, run_input, thread_id=thread_id)
        except AgentErrors as exc:
            raise run_error(exc) from None
        self.state.metrics.runs_started += 1
        return {"type": "run_accepted", "run_id": record.run_id, "thread_id": record.thread_id}

    async def _cancel(self, data: dict[str, Any]) -> dict[str, Any]:
        run_id = data.get("run_id")
        if not isinstance(run_id, str):
            raise _FrameError("invalid_frame", "a cancel frame needs 'run_id' (a string)")
        record = await self.state.runs.cancel(self.user, run_id)
        if record is None:
            raise _FrameError("run_not_found", f"no run {run_id!r}", run_id=run_id)
        return {"type": "cancel_done", "run_id": run_id, "status": record.status}

    async def _resume(self, data: dict[str, Any], ref: Any) -> None:
        after = data.get("after")
        if after is not None and not isinstance(after, str | int):
            ack = _error_frame("invalid_frame", "'after' must be a cursor string (or null)")
            if ref is not None:
                ack["id"] = ref
            await self._send(ack)
            return
        cursor = None if after is None else str(after)
        ack = {"type": "resumed", "after": cursor}
        if ref is not None:
            ack["id"] = ref
        self._resuming = True
        self._resume_fallback = self.position
        await self._restart(cursor, ack)


async def finish_coroutine(coro: Any, waiting: Any) -> None:
    """Drive to its end a coroutine that was started by hand (``coro.send(None)``) and
    suspended on ``waiting``, the way an asyncio task would: wait for what it waits on, resume
    it, repeat. Cancelling this closes the coroutine."""
    try:
        while True:
            if waiting is None:  # a bare yield (asyncio.sleep(0)): just let the loop run
                await asyncio.sleep(0)
            elif asyncio.isfuture(waiting):
                waiting._asyncio_future_blocking = False
                await asyncio.wait((waiting,))
            else:
                raise RuntimeError(f"cannot wait on {waiting!r} outside a task")
            try:
                waiting = coro.send(None)
            except StopIteration:
                return
    except BaseException:
        coro.close()
        raise


def ws_open(ws: WebSocket) -> bool:
    """True while the server may still send on ``ws``."""
    return (
        ws.application_state is WebSocketState.CONNECTED
        and ws.client_state is WebSocketState.CONNECTED
    )


class _FrameError(Exception):
    def __init__(self, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.extra = extra


def _error_frame(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"type": "error", "error": code, "message": message, **extra}


# -- dev mode: loopback Host names only -------------------------------------------------------


def is_loopback_host(host: str | None) -> bool:
    """True for a ``Host`` header naming loopback: ``localhost``, a 127.0.0.0/8 address or
    ``[::1]``, with any port."""
    if not host:
        return False
    name, port = host, ""
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        if rest and not rest.startswith(":"):
            return False
        port = rest[1:]
    elif host.count(":") == 1:
        name, _, port = host.partition(":")
    if port and not port.isdigit():
        return False
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class LoopbackHostOnly:
    """ASGI middleware answering ``421`` (WebSocket: the handshake is denied with ``421``) to
    any request whose ``Host`` is not loopback."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = next(
            (v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"host"), None
        )
        if is_loopback_host(host):
            await self.app(scope, receive, send)
            return
        shown = "no Host header" if host is None else f"Host {host[:100]!r}"
        error = ApiError(
            421,
            "misdirected_request",
            f"{shown} is not a loopback name: a --dev server answers only requests to "
            "localhost, 127.0.0.1 or [::1] (any port), so that no other site can reach it "
            "through DNS rebinding",
        )
        response = JSONResponse(error.body(), status_code=error.status)
        if scope["type"] == "http":
            await response(scope, receive, send)
            return
        websocket = WebSocket(scope, receive, send)
        if "websocket.http.response" in scope.get("extensions", {}):
            await websocket.send_denial_response(response)
        else:
            await websocket.close(code=CLOSE_POLICY)


# -- the application ---------------------------------------------------------------------------


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


async def _input_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, InputError)
    body = {"error": exc.code, "message": exc.message, **exc.extra}
    return JSONResponse(body, status_code=exc.status)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return JSONResponse(
        {"error": code, "message": str(exc.detail)},
        status_code=exc.status_code,
        headers=exc.headers,
    )


def create_app(
    factory: ExecutionEngineFactory | None = None,
    *,
    secret: str | bytes | None = None,
    dev: bool = False,
    settings: ServerSettings | None = None,
) -> Starlette:
    """The ASGI application serving ``factory``'s agents.

    ``secret`` is the HS256 secret (at least 32 bytes). With ``dev=True`` a missing secret is
    replaced by a random one and ``POST /v1/dev/token`` mints tokens for any user name: never
    expose a dev server beyond loopback. ``settings`` default to the ``[server]`` table of the
    factory's configuration. On shutdown the app drains runs and shuts the factory down.
    """
    if factory is None:
        factory = ExecutionEngineFactory()
    if settings is None:
        settings = factory.settings.model("server", ServerSettings)
    if secret is None and dev:
        secret = secrets.token_urlsafe(48)
    verifier = TokenVerifier(secret or b"", dev=dev)
    state = ServerState(factory, verifier, settings, dev=dev)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        sweeper = asyncio.get_running_loop().create_task(
            state.housekeeping(), name="agentengine-server-housekeeping"
        )
        try:
            yield
            await state.shutdown()
        finally:
            sweeper.cancel()

    routes = [
        Route("/", index),
        Route("/static/{name}", static_file),
        Route("/healthz", healthz),
        Route("/metrics", metrics),
        Route("/openapi.json", openapi),
        Route("/v1/agents", list_agents),
        Route("/v1/runs", start_run, methods=["POST"]),
        Route("/v1/runs", list_runs, methods=["GET"]),
        Route("/v1/runs/{run_id}", get_run),
        Route("/v1/runs/{run_id}/cancel", cancel_run, methods=["POST"]),
        Route("/v1/events", sse_events),
        WebSocketRoute("/v1/ws", ws_endpoint),
    ]
    if dev:
        routes.append(Route("/v1/dev/token", dev_token, methods=["POST"]))
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            ApiError: _api_error,
            InputError: _input_error,
            HTTPException: _http_error,
        },
        # A dev server mints tokens for anyone: it must not answer a page that reached it
        # through DNS rebinding (a name of the attacker's resolving to 127.0.0.1).
        middleware=[Middleware(LoopbackHostOnly)] if dev else [],
    )
    app.state.agentengine = state
    return app
