"""Bearer tokens: JWT HS256 with the user id in ``sub`` and a required ``exp``.

``TokenVerifier.verify`` turns a token into a user id or raises ``AuthError`` saying what was
wrong (the message is safe to show the client: it never contains the secret or the token).
"""

from __future__ import annotations

import time

import jwt
from agentengine import InvalidContextError, UserExecutionContext

from agentengine_server.settings import JWT_SECRET_ENV, MIN_SECRET_BYTES

__all__ = ["AuthError", "SecretError", "TokenVerifier", "bearer_token", "check_secret"]

_ALGORITHM = "HS256"


class AuthError(Exception):
    """A missing, malformed, forged or expired token (HTTP 401, WebSocket handshake 403)."""


class SecretError(ValueError):
    """The JWT secret is missing or too short to start the server."""


def check_secret(secret: str | bytes | None) -> bytes:
    """The secret as bytes; raise ``SecretError`` when it is missing or shorter than 32 bytes."""
    if not secret:
        raise SecretError(
            f"no JWT secret: set {JWT_SECRET_ENV} to a random secret of at least "
            f'{MIN_SECRET_BYTES} bytes (for example the output of `python -c "import secrets; '
            'print(secrets.token_urlsafe(48))"`), or pass --dev for local development'
        )
    raw = secret.encode() if isinstance(secret, str) else secret
    if len(raw) < MIN_SECRET_BYTES:
        raise SecretError(
            f"{JWT_SECRET_ENV} is {len(raw)} bytes long; use a random secret of at least "
            f"{MIN_SECRET_BYTES} bytes"
        )
    return raw


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class TokenVerifier:
    """Verifies (and, for ``--dev``, issues) HS256 tokens signed with one secret."""

    def __init__(self, secret: str | bytes, *, leeway: float = 0.0) -> None:
        self._secret = check_secret(secret)
        self._leeway = leeway

    def verify(self, token: str | None) -> str:
        """The user id (``sub``) of a valid token; raise ``AuthError`` otherwise."""
        if not token:
            raise AuthError(
                "missing bearer token: send 'Authorization: Bearer <token>' (WebSocket: the "
                "'bearer, <token>' subprotocol or ?token=)"
            )
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[_ALGORITHM],
                options={"require": ["exp", "sub"]},
                leeway=self._leeway,
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired: get a new one") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(
                f"token has no {exc.claim!r} claim; 'sub' and 'exp' are required"
            ) from None
        except jwt.InvalidSignatureError:
            raise AuthError("token signature is invalid") from None
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        user_id = claims.get("sub")
        try:
            UserExecutionContext(user_id=user_id)
        except InvalidContextError as exc:
            raise AuthError(f"token subject is not a usable user id: {exc}") from None
        return str(user_id)

    def issue(self, user_id: str, ttl: float) -> str:
        """A token for ``user_id`` valid for ``ttl`` seconds."""
        now = int(time.time())
        return jwt.encode(
            {"sub": user_id, "iat": now, "exp": now + int(ttl)}, self._secret, algorithm=_ALGORITHM
        )
