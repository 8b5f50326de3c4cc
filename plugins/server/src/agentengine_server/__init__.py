"""agentengine-server: each user's agents and live events over HTTP, SSE and WebSocket.

``create_app(factory, secret=...)`` builds the Starlette application; ``agentengine serve``
runs it under uvicorn (``AgentServer``) with a graceful SIGTERM shutdown. See docs/server.md.
"""

from typing import TYPE_CHECKING

from agentengine.lazy import lazy_exports

if TYPE_CHECKING:
    from agentengine_server.app import ApiError, ServerState, create_app
    from agentengine_server.auth import AuthError, SecretError, TokenVerifier, check_secret
    from agentengine_server.plugin import ServerPlugin
    from agentengine_server.server import AgentServer, uvicorn_config
    from agentengine_server.settings import JWT_SECRET_ENV, MIN_SECRET_BYTES, ServerSettings

# Imported on first use: the entry point loads ``agentengine_server.plugin`` (and so this
# package) for every ``agentengine`` command, which must not pay for Starlette and uvicorn.
_EXPORTS = {
    "ApiError": "agentengine_server.app",
    "ServerState": "agentengine_server.app",
    "create_app": "agentengine_server.app",
    "AuthError": "agentengine_server.auth",
    "SecretError": "agentengine_server.auth",
    "TokenVerifier": "agentengine_server.auth",
    "check_secret": "agentengine_server.auth",
    "ServerPlugin": "agentengine_server.plugin",
    "AgentServer": "agentengine_server.server",
    "uvicorn_config": "agentengine_server.server",
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
    "uvicorn_config",
]
