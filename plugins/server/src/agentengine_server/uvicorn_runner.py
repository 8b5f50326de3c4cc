"""Running the app under uvicorn with a graceful, signal-driven shutdown.

The drain itself is ``agentengine.drain_on_signal``, entered in the app's lifespan (see
``app``): on SIGTERM or SIGINT it holds the signal back from uvicorn while runs drain (their
last events still reach connected clients) and the server sends each connection a close frame,
then passes the signal on. ``AgentServer`` adds what is particular to ``agentengine serve``: it
stops listening as the drain begins (``ShutdownDrain.when_draining``); uvicorn re-raises the
signal that stopped it, so the process would die of SIGTERM instead of exiting 0; and a second
signal during the shutdown ends the process at once, killed by that signal (exit status 128 +
the signal number; -N for a parent such as ``subprocess``). A shutdown started from code
(``server.should_exit = True``) drains too, through the same mechanism (``ShutdownDrain.run``),
before uvicorn closes connections.

The drain is bounded (see ``ExecutionEngineFactory.shutdown``): runs left at the drain deadline
are cancelled, and runs that ignore cancellation are abandoned after ``close_timeout``.
``run_server`` then gives tasks still pending (such abandoned runs) ``close_timeout`` seconds
to end and closes the loop without waiting longer, where ``asyncio.run`` would wait forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import socket
import threading
from collections.abc import Callable, Generator
from typing import Any

import uvicorn
from agentengine import ShutdownDrain
from starlette.applications import Starlette
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from agentengine_server.errors import CLOSE_INVALID_DATA
from agentengine_server.state import ServerState

__all__ = ["AgentServer", "WebSocketProtocol", "run_server", "uvicorn_config"]

#: The close reason of a text message that is not UTF-8 (the app logs it with the user id).
INVALID_UTF8_REASON = "invalid UTF-8 in a text message"

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def uvicorn_config(
    app: Starlette, *, host: str = "127.0.0.1", port: int = 8000, log_level: str = "warning"
) -> uvicorn.Config:
    """The uvicorn configuration for ``app``: the websockets (sans-I/O) implementation
    (``WebSocketProtocol``: a text frame that is not UTF-8 closes with 1007), client frames
    capped at the ``max_frame_bytes`` setting (bigger ones close with 1009), no access log
    (query strings may carry tokens)."""
    state: ServerState = app.state.agentengine
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        ws=WebSocketProtocol,
        ws_max_size=state.settings.max_frame_bytes,
        ws_per_message_deflate=state.settings.ws_per_message_deflate,
        lifespan="on",
        access_log=False,
        log_level=log_level,
        # Our shutdown drains within the factory's deadline and closes connections itself;
        # this bounds uvicorn's wait for whatever is left after that.
        timeout_graceful_shutdown=math.ceil(state.settings.shutdown_flush_timeout) + 1,
    )


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets (sans-I/O) protocol, except that a text message that is not valid
    UTF-8 fails the connection with 1007 without logging a traceback: uvicorn logs one with
    ``logger.exception`` for what is the client's fault, not the server's. The app still hears
    of it (``websocket.disconnect`` with code 1007 and ``INVALID_UTF8_REASON``) and logs it
    as a warning with the user id (``websocket.Connection``)."""

    def send_receive_event_to_app(self) -> None:
        """Hand the complete message to the app; fail the connection if it is text that is not
        UTF-8."""
        if self.curr_msg_data_type == "text" and not self.close_sent:
            try:
                # Checked here, then decoded again by uvicorn: client messages are small
                # (``max_frame_bytes``) and rare, and uvicorn keeps its own queueing and flow
                # control this way.
                b"".join(self.frames).decode()
            except UnicodeDecodeError:
                self.frames = []
                # RFC 6455, 8.1: fail the connection (close frame, then end the TCP stream).
                self.conn.fail(CLOSE_INVALID_DATA, INVALID_UTF8_REASON)
                self.handle_parser_exception()
                return
        super().send_receive_event_to_app()


class AgentServer(uvicorn.Server):
    """A uvicorn server that drains agentengine runs before closing connections."""

    def __init__(
        self, config: uvicorn.Config, on_started: Callable[[AgentServer], None] | None = None
    ) -> None:
        super().__init__(config)
        self.signals_received: list[int] = []
        self._on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's startup, then the ``on_started`` callback (the port is bound by then)."""
        await super().startup(sockets)
        if self.started:
            # Draining: take no new connections (new runs and streams are refused anyway).
            self.drain.when_draining(self._stop_listening)
        if self.started and self._on_started is not None:
            self._on_started(self)

    def _stop_listening(self) -> None:
        for server in getattr(self, "servers", []):
            server.close()

    @property
    def state(self) -> ServerState:
        """The application's shared state."""
        app: Any = self.config.app
        state: ServerState = app.state.agentengine
        return state

    @property
    def drain(self) -> ShutdownDrain:
        """The application's drain (``agentengine.drain_on_signal``)."""
        app: Any = self.config.app
        drain: ShutdownDrain = app.state.agentengine_drain
        return drain

    @property
    def bound_port(self) -> int | None:
        """The port actually listened on (useful with port 0), once started."""
        for server in getattr(self, "servers", []):
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return None

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """SIGINT/SIGTERM start a graceful shutdown; a second one ends the process at once
        (killed by that signal). Unlike uvicorn's default the first signal is not re-raised
        afterwards, so a graceful shutdown exits 0."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self._on_signal) for sig in _SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, sig: int, frame: Any) -> None:
        # Signal handlers run between two bytecodes of whatever the main thread does (the event
        # loop, or an agent's code): they only set flags, never raise into that code.
        self.signals_received.append(sig)
        if self.should_exit:
            _exit_now(sig)
        self.should_exit = True

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Stop accepting, drain (at once if a signal already drained), then uvicorn's own
        shutdown: for a shutdown started from code, which no signal handler saw."""
        self._stop_listening()
        if not self.force_exit:
            await self.drain.run()
        await super().shutdown(sockets)


def _exit_now(sig: int) -> None:
    """End the process now, killed by ``sig``: the operator asked twice. Writes one line with
    ``os.write`` (logging from a signal handler could re-enter a stream being written)."""
    name = signal.Signals(sig).name
    with contextlib.suppress(OSError):
        message = f"agentengine-server: second {name} during shutdown; exiting at once\n"
        os.write(2, message.encode())
    signal.signal(sig, signal.SIG_DFL)
    os.kill(os.getpid(), sig)
    os._exit(128 + sig)  # not reached: the default action of SIGINT/SIGTERM ends the process


def run_server(server: AgentServer) -> None:
    """Run ``server`` in a new event loop until it has shut down, like ``asyncio.run``, except
    that tasks still pending afterwards (runs abandoned because they ignore cancellation) are
    cancelled and given ``close_timeout`` seconds, then left behind: the process exits anyway."""
    grace = server.state.factory.engine_settings.close_timeout
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(server.serve())
    finally:
        try:
            leftovers = asyncio.all_tasks(loop)
            for task in leftovers:
                task.cancel()
            if leftovers:
                loop.run_until_complete(asyncio.wait(leftovers, timeout=grace))
            for task in leftovers:
                if task.done() and not task.cancelled():
                    task.exception()  # retrieved: the task's own code reported it
            loop.run_until_complete(_bounded(loop.shutdown_asyncgens(), grace))
        finally:
            asyncio.set_event_loop(None)
            loop.close()


async def _bounded(awaitable: Any, timeout: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(awaitable, timeout)
