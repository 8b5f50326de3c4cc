"""``create_app``: the Starlette application, assembled from the server's parts.

It builds the ``ServerState`` around one ``ExecutionEngineFactory``, mounts the routes (the
page, the JSON API, SSE, the WebSocket and, with ``dev=True``, the dev token route behind the
loopback guard), answers errors as JSON, and runs the housekeeping loop and the graceful
shutdown in its lifespan: ``agentengine.drain_on_signal``, the mechanism any ASGI app uses, with
the server's own drain (``ServerState.shutdown``), so that on SIGTERM runs drain and every
connection is sent its last events before the server closes it. ``agentengine serve`` runs it
under uvicorn (``uvicorn_runner``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import secrets
from collections.abc import AsyncIterator
from typing import Any

import structlog
from agentengine import BackendUnavailableError, ExecutionEngineFactory, drain_on_signal
from agentengine.telemetry import tracing_enabled
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute

from agentengine_server.auth import TokenVerifier
from agentengine_server.dev_mode import LoopbackHostOnly, dev_token
from agentengine_server.errors import ApiError, unavailable
from agentengine_server.http_routes import api_routes
from agentengine_server.page import page_routes
from agentengine_server.settings import ServerSettings
from agentengine_server.sse import sse_events
from agentengine_server.state import ServerState
from agentengine_server.websocket import ws_endpoint

__all__ = ["create_app"]

_log = structlog.get_logger("agentengine_server")


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


async def _unavailable(request: Request, exc: Exception) -> Response:
    # Any route (get, list, cancel a run) whose backend is unreachable: 503, never a 500.
    assert isinstance(exc, BackendUnavailableError)
    return await _api_error(request, unavailable(exc))


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
    # On a shutdown signal the drain runs before the server's own handler hears of it (and so
    # before uvicorn closes connections); leaving the lifespan drains if nothing did yet.
    drain = drain_on_signal(factory, on_drain=state.shutdown)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        sweeper = asyncio.get_running_loop().create_task(
            state.housekeeping(), name="agentengine-server-housekeeping"
        )
        try:
            async with drain:
                yield
        finally:
            sweeper.cancel()

    routes: list[BaseRoute] = [
        *page_routes(),
        *api_routes(),
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
            BackendUnavailableError: _unavailable,
            HTTPException: _http_error,
        },
        # A dev server mints tokens for anyone: it must not answer a page that reached it
        # through DNS rebinding (a name of the attacker's resolving to 127.0.0.1).
        middleware=[Middleware(LoopbackHostOnly)] if dev else [],
    )
    app.state.agentengine = state
    app.state.agentengine_drain = drain
    if tracing_enabled():  # an SDK is installed: HTTP and WebSocket spans, the standard way
        app.add_middleware(_asgi_tracing())
    return app


def _asgi_tracing() -> Any:
    """The ASGI instrumentation's middleware (outermost: its span covers the request, and it
    reads the client's ``traceparent``). /healthz and /metrics make no spans."""
    try:
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    except ImportError:
        _log.warning(
            "tracing is on but opentelemetry-instrumentation-asgi is not installed: no HTTP "
            "spans (runs are still traced, a client's traceparent honoured); "
            "pip install 'agentengine-server[otel]'"
        )
        return _NoMiddleware
    # One span per request or WebSocket connection: not one per message received or frame
    # sent (a span per event delivered would cost the fan-out more than the send itself).
    return functools.partial(
        OpenTelemetryMiddleware, excluded_urls="healthz,metrics", exclude_spans=["receive", "send"]
    )


class _NoMiddleware:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)
