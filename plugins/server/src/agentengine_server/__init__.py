"""agentengine-server: each user's agents and live events over HTTP, SSE and WebSocket.

``create_app(factory, secret=...)`` builds the Starlette application; ``agentengine serve``
runs it under uvicorn (``AgentServer``) with a graceful SIGTERM shutdown. See docs/server.md.
"""

from agentengine_server.app import ApiError, ServerState, create_app
from agentengine_server.auth import AuthError, SecretError, TokenVerifier, check_secret
from agentengine_server.plugin import ServerPlugin
from agentengine_server.server import AgentServer, uvicorn_config
from agentengine_server.settings import JWT_SECRET_ENV, MIN_SECRET_BYTES, ServerSettings

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
