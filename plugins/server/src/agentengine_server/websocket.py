"""``WS /v1/ws``: the caller's events as JSON text frames; runs, cancels, resumes, new tokens.

``ws_endpoint`` authenticates the handshake (``Sec-WebSocket-Protocol: bearer, <token>`` or
``?token=``) and serves one ``Connection``: a sender task streaming the user's events from a
pump (frames of a client that keeps up are written directly by the user's fan-out, see
``direct_send``), a receiver task answering client frames, and a watch on the token's expiry.
Every client frame gets an answer and the connection stays open; the close codes are listed in
docs/server.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import math
import time
from typing import Any

import structlog
from agentengine import BackendUnavailableError
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from agentengine_server.direct_send import send_eagerly
from agentengine_server.errors import (
    CLOSE_GOING_AWAY,
    CLOSE_INTERNAL,
    CLOSE_INVALID_DATA,
    CLOSE_POLICY,
    CLOSE_TOO_BIG,
    CLOSE_TOO_MANY_CONNECTIONS,
    CLOSE_TRY_AGAIN_LATER,
    ApiError,
    BufferOverflowError,
    InvalidCursorError,
    stream_error_item,
    unavailable,
)
from agentengine_server.inputs import load_json
from agentengine_server.requests import run_request
from agentengine_server.runs import wire_status
from agentengine_server.state import ServerState, server_state
from agentengine_server.streaming import EventPump, Frame

__all__ = ["Connection", "ws_endpoint", "ws_open"]

_log = structlog.get_logger("agentengine_server")

_CLIENT_FRAME_TYPES = ("run", "cancel", "resume", "auth")
#: Close codes that end a connection because of a frame the client got wrong (the protocol
#: layer closes it; ``uvicorn_runner.WebSocketProtocol``), with what was wrong.
_CLIENT_FAULTS = {
    CLOSE_INVALID_DATA: "a text frame was not valid UTF-8 (close 1007)",
    CLOSE_TOO_BIG: "a frame was larger than max_frame_bytes (close 1009)",
}
#: Fields any client frame may carry besides its own.
_ENVELOPE = ("type", "id")


def _invalid_frame(message: str) -> ApiError:
    return ApiError(400, "invalid_frame", message)


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
    state = server_state(websocket)
    token, subprotocol = _ws_token(websocket)
    try:
        claims = state.token_claims(token)
    except ApiError as exc:
        _log.info("websocket refused", reason=exc.message)
        # Closing before accepting answers the handshake with HTTP 403.
        await websocket.close(code=CLOSE_POLICY)
        return
    if state.closing:
        await websocket.close(code=CLOSE_TRY_AGAIN_LATER)
        return
    user = claims.user_id
    try:
        slot = state.open_stream(user, "ws")
    except ApiError as exc:
        # Accepted, then closed with a code and reason of its own: a browser sees neither the
        # status nor the body of a refused handshake, only a close.
        await websocket.accept(subprotocol=subprotocol)
        await websocket.close(code=CLOSE_TOO_MANY_CONNECTIONS, reason=exc.message[:120])
        return
    try:
        after = state.start_cursor(user, websocket.query_params.get("after"))
        await websocket.accept(subprotocol=subprotocol)
        conn = Connection(state, websocket, user, after)
        conn.expires_at = claims.expires_at
        state.connections.add(conn)
        try:
            await conn.serve()
        finally:
            state.connections.discard(conn)
            conn.finished.set()
    finally:
        slot.release()


def ws_open(ws: WebSocket) -> bool:
    """True while the server may still send on ``ws``."""
    return (
        ws.application_state is WebSocketState.CONNECTED
        and ws.client_state is WebSocketState.CONNECTED
    )


class Connection:
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

    # -- the event stream -----------------------------------------------------------------------

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
        self.state.metrics.delivered(
            "ws", gap=frame.gap, published=frame.published, missed=frame.missed
        )

    def _send_direct(self, frame: Frame) -> None:
        """Send ``frame`` now, from the fan-out's task (called only when nothing is queued or
        in flight; see ``direct_send``). A send that has to wait is finished by a task while
        later frames queue up in the pump (``busy``), so the fan-out never waits for a client."""
        if self._dead:
            return
        pump = self.pump
        inflight = send_eagerly(
            self.ws.send_text(frame.text),
            sent=functools.partial(self._sent, frame),
            failed=self._direct_failed,
            settled=pump.idle,
        )
        if inflight is not None:
            pump.busy = True
            self._inflight = inflight

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
        """Run the connection until the client leaves, the stream ends or the token is no
        longer good; then stop every task of it."""
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
            await self._send(stream_error_item(error))
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

    # -- client frames --------------------------------------------------------------------------

    async def _receive_loop(self) -> None:
        ws = self.ws
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                self._log_client_fault(message.get("code"))
                return
            if self._token_expired():
                # Refused even before the expiry close goes out: nothing runs on an old token.
                await self._send(
                    ApiError(
                        401,
                        "token_expired",
                        "the connection's token expired: the frame was not handled; reconnect "
                        "with a new token",
                    ).frame()
                )
                continue
            text = message.get("text")
            if text is None:
                await self._send(
                    _invalid_frame("binary frames are not accepted; send JSON text").frame()
                )
                continue
            await self._handle(text)

    def _log_client_fault(self, code: Any) -> None:
        """One warning line, with the user id, when the connection ended on a frame the client
        got wrong (the server closed it with that code); nothing for an ordinary close."""
        fault = _CLIENT_FAULTS.get(code)
        if fault is not None:
            _log.warning(f"websocket closed: {fault}", user_id=self.user, close_code=code)

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
            error = ApiError(500, "internal_error", "the frame could not be handled; retry later")
            await self._send(error.frame())

    async def _dispatch(self, text: str) -> None:
        ref: Any = None
        try:
            data, sizes = load_json(
                text, what="the frame", max_depth=self.state.settings.max_json_depth
            )
            if not isinstance(data, dict):
                raise _invalid_frame(f"expected a JSON object, got {type(data).__name__}")
            ref = data.get("id")
            kind = data.get("type")
            if kind == "run":
                reply = await self._run(data, sizes)
            elif kind == "cancel":
                reply = await self._cancel(data)
            elif kind == "resume":
                await self._resume(data, ref)
                return
            elif kind == "auth":
                reply = self._refresh_token(data)
            else:
                raise _invalid_frame(
                    f"unknown frame type {kind!r}; send one of: {', '.join(_CLIENT_FRAME_TYPES)}"
                )
        except ApiError as exc:
            reply = exc.frame()
        except BackendUnavailableError as exc:  # e.g. cancel while Redis is unreachable
            reply = unavailable(exc).frame()
        if ref is not None:
            reply["id"] = ref
        await self._send(reply)

    async def _run(self, data: dict[str, Any], sizes: dict[str, int]) -> dict[str, Any]:
        request = run_request(data, sizes, self.state.settings, envelope=_ENVELOPE)
        record = await self.state.start_run(self.user, request)
        return {"type": "run_accepted", "run_id": record.run_id, "thread_id": record.thread_id}

    async def _cancel(self, data: dict[str, Any]) -> dict[str, Any]:
        run_id = data.get("run_id")
        if not isinstance(run_id, str):
            raise _invalid_frame("a cancel frame needs 'run_id' (a string)")
        record = await self.state.runs.cancel(self.user, run_id)
        if record is None:
            raise ApiError(404, "run_not_found", f"no run {run_id!r}", run_id=run_id)
        return {"type": "cancel_done", "run_id": run_id, "status": wire_status(record)}

    async def _resume(self, data: dict[str, Any], ref: Any) -> None:
        after = data.get("after")
        if after is not None and not isinstance(after, str | int):
            raise _invalid_frame("'after' must be a cursor string (or null)")
        cursor = None if after is None else str(after)
        ack = {"type": "resumed", "after": cursor}
        if ref is not None:
            ack["id"] = ref
        self._resuming = True
        self._resume_fallback = self.position
        await self._restart(cursor, ack)

    def _refresh_token(self, data: dict[str, Any]) -> dict[str, Any]:
        """``{"type": "auth", "token": ...}``: go on with a new token of the same user."""
        token = data.get("token")
        if token is not None and not isinstance(token, str):
            raise _invalid_frame("an auth frame needs 'token' (a string)")
        try:
            claims = self.state.token_claims(token)
        except ApiError as exc:
            raise ApiError(
                401,
                "unauthorized",
                f"{exc.message}; the connection keeps its current token until that one expires",
            ) from None
        if claims.user_id != self.user:
            self.state.metrics.auth_failures += 1
            self._other_user_token.set()
            raise ApiError(
                401,
                "unauthorized",
                f"the token is not for {self.user!r}, the user of this connection; a "
                "connection cannot change users: open a new one (closing this one)",
            )
        self.expires_at = claims.expires_at
        return {"type": "auth_ok", "user": self.user, "expires_at": claims.expires_at}
