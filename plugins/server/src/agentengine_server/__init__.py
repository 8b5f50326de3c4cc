"""agentengine-server: each user's agents and live events over HTTP, SSE and WebSocket.

``create_app(factory, secret=...)`` builds the Starlette application; ``agentengine serve``
runs it under uvicorn (``AgentServer``) with a graceful SIGTERM shutdown. See docs/server.md.

One concern per module, and imports run one way, from the top of this list to the bottom
(a module imports only modules of the groups above it, or of its own group without a cycle):

1. foundations: ``errors`` (the server's errors and the answers they become), ``settings``
   (the ``[server]`` table), ``auth`` (bearer tokens), ``inputs`` (JSON checked at the door),
   ``requests`` (HTTP bodies and the one run-request check), ``metrics`` (counters, Prometheus
   text), ``memory`` (RSS, heap trimming), ``openapi`` (the document), ``direct_send`` (a send
   run by hand, without a task per frame);
2. server state: ``runs`` (a thin layer on the core's ``factory.submit_run`` and
   ``factory.runs``), ``streaming`` (event pumps and per-user fan-out), ``state``
   (``ServerState``: what the routes share, housekeeping, shutdown);
3. transports: ``http_routes`` (the JSON API), ``sse`` (``GET /v1/events``), ``websocket``
   (``WS /v1/ws``), ``page`` (the web page), ``dev_mode`` (``--dev``: dev tokens, loopback
   guard);
4. ``app`` (``create_app``: assembly, error handlers, lifespan);
5. ``uvicorn_runner`` (``AgentServer``, ``uvicorn_config``, ``run_server``,
   ``WebSocketProtocol``), ``cli``
   (``agentengine serve``), ``plugin`` (the entry point).

From the core, only its public API: ``agentengine``'s exports, plus ``agentengine.lazy`` (here)
and ``agentengine.log`` (``cli``).
"""

from typing import TYPE_CHECKING

from agentengine.lazy import lazy_exports

if TYPE_CHECKING:
    from agentengine_server.app import create_app
    from agentengine_server.auth import AuthError, SecretError, TokenVerifier, check_secret
    from agentengine_server.errors import ApiError
    from agentengine_server.plugin import ServerPlugin
    from agentengine_server.settings import JWT_SECRET_ENV, MIN_SECRET_BYTES, ServerSettings
    from agentengine_server.state import ServerState
    from agentengine_server.uvicorn_runner import AgentServer, run_server, uvicorn_config

# Imported on first use: the entry point loads ``agentengine_server.plugin`` (and so this
# package) for every factory and ``agentengine --help``, which must not pay for Starlette
# and uvicorn.
_EXPORTS = {
    "ApiError": "agentengine_server.errors",
    "ServerState": "agentengine_server.state",
    "create_app": "agentengine_server.app",
    "AuthError": "agentengine_server.auth",
    "SecretError": "agentengine_server.auth",
    "TokenVerifier": "agentengine_server.auth",
    "check_secret": "agentengine_server.auth",
    "ServerPlugin": "agentengine_server.plugin",
    "AgentServer": "agentengine_server.uvicorn_runner",
    "run_server": "agentengine_server.uvicorn_runner",
    "uvicorn_config": "agentengine_server.uvicorn_runner",
    "JWT_SECRET_ENV": "agentengine_server.settings",
    "MIN_SECRET_BYTES": "agentengine_server.settings",
    "ServerSettings": "agentengine_server.settings",
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


__all__ = [
    "JWT_SECRET_ENV",
    "MIN_SECRET_BYTES",
    "AgentServer",
    "ApiError",
    "AuthError",
    "SecretError",
    "ServerPlugin",
    "ServerSettings",
    "ServerState",
    "TokenVerifier",
    "check_secret",
    "create_app",
    "run_server",
    "uvicorn_config",
]
