"""What ``agentengine serve --dev`` adds: ``POST /v1/dev/token`` and the loopback-only guard.

A dev server mints tokens for any user name, so it must be reachable from this machine only:
``cli.py`` refuses to bind it beyond loopback, and ``LoopbackHostOnly`` answers ``421`` to any
request whose ``Host`` is not a loopback name, so that no web page can reach it through DNS
rebinding (a name of the attacker's resolving to 127.0.0.1).
"""

from __future__ import annotations

import ipaddress

from agentengine import InvalidContextError, UserExecutionContext
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from agentengine_server.errors import CLOSE_POLICY, ApiError
from agentengine_server.requests import check_fields, read_json
from agentengine_server.state import server_state

__all__ = ["LoopbackHostOnly", "dev_token", "is_loopback_host"]


async def dev_token(request: Request) -> Response:
    """``--dev`` only: a token for any user name, so the page and tests need no identity
    provider. Signed with the dev server's own key and marked as a dev token: never valid on a
    production server. JSON bodies only: a web page can send ``text/plain`` cross-origin
    without asking, but ``application/json`` needs a CORS preflight, which this server never
    grants."""
    state = server_state(request)
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json":
        raise ApiError(
            415,
            "unsupported_media_type",
            f"send the body as application/json, not {media_type or 'without a Content-Type'}",
        )
    data, _ = await read_json(request, state.settings)
    check_fields(data, {"user": str}, {"user"})
    user = data["user"]
    try:
        UserExecutionContext(user_id=user)
    except InvalidContextError as exc:
        raise ApiError(422, "invalid_user", str(exc)) from None
    ttl = state.settings.dev_token_ttl
    return JSONResponse(
        {"token": state.verifier.issue_dev(user, ttl), "user": user, "expires_in": int(ttl)}
    )


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
