"""Running the app under uvicorn with a graceful, signal-driven shutdown.

uvicorn's own shutdown closes WebSocket connections (code 1012) before the application's
lifespan shutdown runs, and re-raises the signal that stopped it, so the process would die
of SIGTERM instead of exiting 0. ``AgentServer`` orders things for agentengine instead: stop
accepting connections, drain runs (their last events still reach connected clients), send each
connection a close frame, then let uvicorn finish; and it exits normally.
"""

from __future__ import annotations

import contextlib
import math
import signal
import socket
import threading
from collections.abc import Callable, Generator
from typing import Any

import uvicorn
from starlette.applications import Starlette

from agentengine_server.app import ServerState

__all__ = ["AgentServer", "uvicorn_config"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def uvicorn_config(
    app: Starlette, *, host: str = "127.0.0.1", port: int = 8000, log_level: str = "warning"
) -> uvicorn.Config:
    """The uvicorn configuration for ``app``: the websockets (sans-I/O) implementation, client
    frames capped at the ``max_frame_bytes`` setting (bigger ones close with 1009), no access
    log (query strings may carry tokens)."""
    state: ServerState = app.state.agentengine
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        ws="websockets-sansio",
        ws_max_size=state.settings.max_frame_bytes,
        ws_per_message_deflate=state.settings.ws_per_message_deflate,
        lifespan="on",
        access_log=False,
        log_level=log_level,
        # Our shutdown drains within the factory's deadline and closes connections itself;
        # this bounds uvicorn's wait for whatever is left after that.
        timeout_graceful_shutdown=math.ceil(state.settings.shutdown_flush_timeout) + 1,
    )


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
        if self.started and self._on_started is not None:
            self._on_started(self)

    @property
    def state(self) -> ServerState:
        """The application's shared state."""
        app: Any = self.config.app
        state: ServerState = app.state.agentengine
        return state

    @property
    def bound_port(self) -> int | None:
        """The port actually listened on (useful with port 0), once started."""
        for server in getattr(self, "servers", []):
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return None

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """SIGINT/SIGTERM start a graceful shutdown (a second SIGINT forces it); unlike
        uvicorn's default the signal is not re-raised afterwards, so the exit status is 0."""
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
        self.signals_received.append(sig)
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        else:
            self.should_exit = True

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Stop accepting, drain runs and close connections, then uvicorn's own shutdown."""
        for server in getattr(self, "servers", []):
            server.close()
        if not self.force_exit:
            await self.state.shutdown()
        await super().shutdown(sockets)
