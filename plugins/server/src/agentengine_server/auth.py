"""Bearer tokens: JWT HS256 with the user id in ``sub`` and a required ``exp``.

``TokenVerifier.verify`` turns a token into a user id or raises ``AuthError`` saying what was
wrong (the message is safe to show the client: it never contains the secret or the token).
``TokenVerifier.claims`` also gives the token's expiry (a WebSocket closes then).

Development tokens (``agentengine serve --dev``) can never be valid on a production server:
they are signed with a random key that exists only in the dev server's process (never the
production secret, even when ``AGENTENGINE_JWT_SECRET`` is set), and they carry
``"iss": "agentengine-dev"`` and ``"dev": true``, which a production verifier refuses whatever
key signed them.
"""

from __future__ import annotations

import math
import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt
from agentengine import AgentEngineError, InvalidContextError, UserExecutionContext

from agentengine_server.settings import JWT_SECRET_ENV, MIN_SECRET_BYTES

__all__ = [
    "DEV_ISSUER",
    "AuthError",
    "SecretError",
    "TokenClaims",
    "TokenVerifier",
    "bearer_token",
    "check_secret",
]

_ALGORITHM = "HS256"
#: The ``iss`` of development tokens; production verifiers refuse it.
DEV_ISSUER = "agentengine-dev"
#: RFC 7519 NumericDate claims: numbers (seconds since the epoch), never strings.
_TIME_CLAIMS = ("exp", "nbf", "iat")


class AuthError(AgentEngineError):
    """A missing, malformed, forged or expired token (HTTP 401, WebSocket handshake 403)."""


class _BadSignatureError(AuthError):
    """Not signed with the key tried (another key may still fit)."""


_DEV_REFUSED = (
    "development token refused: tokens minted by `agentengine serve --dev` are never valid on "
    "a production server; use a token from your identity provider"
)


class SecretError(AgentEngineError, ValueError):
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


@dataclass(frozen=True)
class TokenClaims:
    """What a valid token says: whose it is, until when, and whether ``--dev`` minted it."""

    user_id: str
    expires_at: float
    """``exp``: seconds since the epoch; the token is valid while ``time.time()`` is below."""
    dev: bool = False


def _is_dev(claims: dict[str, Any]) -> bool:
    return claims.get("dev") not in (None, False) or claims.get("iss") == DEV_ISSUER


class TokenVerifier:
    """Verifies HS256 tokens signed with one secret; with ``dev=True`` also issues and
    verifies development tokens, signed with a random key of this process only."""

    def __init__(self, secret: str | bytes, *, leeway: float = 0.0, dev: bool = False) -> None:
        self._secret = check_secret(secret)
        self._leeway = leeway
        # Never derived from the secret: a dev token must not verify anywhere else, even on a
        # production server sharing AGENTENGINE_JWT_SECRET; it dies with this process.
        self._dev_key = secrets.token_bytes(32) if dev else None

    @property
    def dev(self) -> bool:
        """True when this verifier issues and accepts development tokens."""
        return self._dev_key is not None

    def verify(self, token: str | None) -> str:
        """The user id (``sub``) of a valid token; raise ``AuthError`` otherwise."""
        return self.claims(token).user_id

    def claims(self, token: str | None) -> TokenClaims:
        """The claims of a valid token; raise ``AuthError`` saying what is wrong otherwise."""
        if not token:
            raise AuthError(
                "missing bearer token: send 'Authorization: Bearer <token>' (WebSocket: the "
                "'bearer, <token>' subprotocol or ?token=)"
            )
        try:
            claims = self._decode(token, self._secret)
        except _BadSignatureError:
            # Not signed with the secret: a dev token of this process, or refused.
            claims = self._decode_dev(token)
            dev = True
        else:
            if _is_dev(claims):  # marked as a dev token, yet signed with the secret: refused
                raise AuthError(_DEV_REFUSED)
            dev = False
        user_id = claims.get("sub")
        try:
            UserExecutionContext(user_id=user_id)
        except InvalidContextError as exc:
            raise AuthError(f"token subject is not a usable user id: {exc}") from None
        return TokenClaims(user_id=str(user_id), expires_at=float(claims["exp"]), dev=dev)

    def _decode_dev(self, token: str) -> dict[str, Any]:
        if self._dev_key is None:
            try:
                unverified = jwt.decode(token, options={"verify_signature": False})
            except jwt.InvalidTokenError:
                unverified = {}
            if isinstance(unverified, dict) and _is_dev(unverified):
                raise AuthError(_DEV_REFUSED) from None
            raise AuthError("token signature is invalid") from None
        try:
            claims = self._decode(token, self._dev_key)
        except _BadSignatureError:
            raise AuthError("token signature is invalid") from None
        if not _is_dev(claims):  # this process never signs anything else with its dev key
            raise AuthError("invalid token: not a development token")
        return claims

    def _decode(self, token: str, key: bytes) -> dict[str, Any]:
        try:
            # Time claims are checked below, after their types: PyJWT would take a string
            # "exp" as a number.
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[_ALGORITHM],
                options={
                    "require": ["exp", "sub"],
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(
                f"token has no {exc.claim!r} claim; 'sub' and 'exp' are required"
            ) from None
        except jwt.InvalidSignatureError:
            raise _BadSignatureError("token signature is invalid") from None
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        for name in _TIME_CLAIMS:
            if name in claims:
                value = claims[name]
                if (
                    isinstance(value, bool)
                    or not isinstance(value, int | float)
                    or not math.isfinite(value)
                ):
                    raise AuthError(
                        f"token claim {name!r} must be a number of seconds since the epoch "
                        f"(RFC 7519 NumericDate), got {type(value).__name__} {value!r}"[:200]
                    )
        now = time.time()
        if claims["exp"] <= now - self._leeway:
            raise AuthError("token expired: get a new one")
        if "nbf" in claims and claims["nbf"] > now + self._leeway:
            raise AuthError("token is not valid yet ('nbf' is in the future)")
        if "iat" in claims and claims["iat"] > now + self._leeway:
            raise AuthError("token is not valid yet ('iat' is in the future)")
        return claims

    def issue(self, user_id: str, ttl: float) -> str:
        """A production token for ``user_id`` valid for ``ttl`` seconds, signed with the
        secret (for tools and tests; the server itself never issues these)."""
        now = int(time.time())
        return jwt.encode(
            {"sub": user_id, "iat": now, "exp": now + int(ttl)}, self._secret, algorithm=_ALGORITHM
        )

    def issue_dev(self, user_id: str, ttl: float) -> str:
        """A development token for ``user_id`` valid for ``ttl`` seconds: signed with this
        process's dev key and marked as such, so only this verifier accepts it."""
        if self._dev_key is None:
            raise RuntimeError("this verifier was not made with dev=True: it issues no dev tokens")
        now = int(time.time())
        claims = {
            "sub": user_id,
            "iat": now,
            "exp": now + int(ttl),
            "iss": DEV_ISSUER,
            "dev": True,
        }
        return jwt.encode(claims, self._dev_key, algorithm=_ALGORITHM)
