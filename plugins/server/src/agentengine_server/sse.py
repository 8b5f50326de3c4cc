"""``GET /v1/events``: the caller's events as Server-Sent Events, ``id:`` = cursor.

A stream resumes after ``Last-Event-ID`` (or ``?after=``), ends at the token's expiry with a
``token_expired`` error item, and sends a keep-alive comment on an idle stream. A client too
slow for its buffer is disconnected and resumes with its ``Last-Event-ID``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import structlog
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from agentengine_server.errors import BufferOverflowError, shutting_down, stream_error_item
from agentengine_server.state import ServerState, StreamSlot, server_state
from agentengine_server.streaming import EventPump

__all__ = ["sse_events"]

_log = structlog.get_logger("agentengine_server")


async def sse_events(request: Request) -> Response:
    """``GET /v1/events``: the caller's events as Server-Sent Events, ``id:`` = cursor."""
    state = server_state(request)
    claims = state.request_claims(request, allow_query=True)
    user = claims.user_id
    if state.closing:
        raise shutting_down()
    slot = state.open_stream(user, "sse")  # 429 too_many_connections past the user's limit
    try:
        requested = request.headers.get("last-event-id") or request.query_params.get("after")
        pump = state.pump(user, state.start_cursor(user, requested))
    except BaseException:
        slot.release()
        raise
    return _EventStreamResponse(
        slot,
        pump,
        _sse_stream(state, user, pump, claims.expires_at),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


class _EventStreamResponse(StreamingResponse):
    """A ``StreamingResponse`` holding its stream's place (``ServerState.open_stream``) and
    pump until it is over, also when the stream never started (the client left before the
    first byte: the generator's own ``finally`` then never runs)."""

    def __init__(
        self, slot: StreamSlot, pump: EventPump, content: AsyncIterator[str], **kwargs: Any
    ) -> None:
        super().__init__(content, **kwargs)
        self._slot = slot
        self._pump = pump

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._slot.release()
            await self._pump.stop()


async def _sse_stream(
    state: ServerState, user: str, pump: EventPump, expires_at: float
) -> AsyncIterator[str]:
    counters = state.metrics
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
                yield _TOKEN_EXPIRED
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
                    yield _error_item(stream_error_item(pump.error))
                return
            if time.time() >= expires_at:
                # The wait ended past the expiry (a busy loop): this frame is not sent; the
                # client gets it again when it resumes from its Last-Event-ID.
                yield _TOKEN_EXPIRED
                return
            if frame.failed:
                yield f"id: {frame.cursor}\nevent: error\ndata: {frame.text}\n\n"
            elif frame.cursor is not None:
                yield f"id: {frame.cursor}\ndata: {frame.text}\n\n"
            else:
                yield f"data: {frame.text}\n\n"
            counters.delivered("sse", gap=frame.gap, published=frame.published, missed=frame.missed)
    finally:
        await pump.stop()


def _error_item(data: dict[str, Any]) -> str:
    """An SSE ``error`` event carrying ``data``."""
    return f"event: error\ndata: {json.dumps(data)}\n\n"


_TOKEN_EXPIRED = _error_item(
    {
        "type": "error",
        "error": "token_expired",
        "message": "token expired: reconnect with a new token (Last-Event-ID resumes)",
    }
)
