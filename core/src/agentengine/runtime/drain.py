"""Draining runs before the server closes connections: ``drain_on_signal`` and friends.

On SIGTERM an ASGI server such as uvicorn closes its connections first (WebSocket clients get
``1012``) and only then runs the application's lifespan shutdown, where the factory would
drain: runs finish on the server, but their last events never reach the clients. The drain
has to come *before* the server's own shutdown. ``drain_on_signal(factory)``, entered in the
application's lifespan, puts it there without touching the server::

    @contextlib.asynccontextmanager
    async def lifespan(app):
        async with ExecutionEngineFactory() as factory, drain_on_signal(factory) as drain:
            app.state.factory, app.state.drain = factory, drain
            yield

It wraps the process's SIGINT/SIGTERM handlers (the server's, installed before the lifespan
starts). The first signal is held back from the server while the drain runs: the factory
refuses new runs (``DrainingError``: answer 503 with ``Retry-After``, see
``DrainingErrorMiddleware``), runs in flight get ``drain_timeout`` seconds to finish and are
cancelled after that (each ends with its terminal event), the event sink closes so that every
subscription ends after its last event, and the drain waits (``flush_timeout``) for the streams
read through ``drain.subscribe`` (or ``drain.track()``) to be sent. Then the held signal goes to
the server's handler, and the server closes connections that have nothing left to deliver.

What it relies on: the server handles SIGINT/SIGTERM with ``signal.signal`` handlers installed
before the lifespan starts and restored after it (uvicorn's ``Server.capture_signals``, also
under gunicorn's uvicorn worker), and the server's handler only sets flags (it may be called
from the event loop rather than from the signal). No private attribute of any server is used.
Other servers, or a shutdown started from code, call ``await drain.run()`` before the server
closes its connections (hypercorn: ``serve(app, config, shutdown_trigger=...)`` with a trigger
that awaits the signal, then ``drain.run()``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

import structlog

from agentengine.errors import BackendUnavailableError, EngineClosedError, describe_error

if TYPE_CHECKING:
    from agentengine.runtime.factory import ExecutionEngineFactory
    from agentengine.sinks.protocol import StreamItem

__all__ = ["DrainingErrorMiddleware", "ShutdownDrain", "drain_on_signal"]

_log = structlog.get_logger("agentengine.runtime.drain")

#: The signals a server shuts down on (Ctrl+C and ``kill``).
SHUTDOWN_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)

_Handler = Callable[[int, FrameType | None], Any] | int | None


class ShutdownDrain:
    """Drains one factory's runs before the server closes its connections.

    Make one with ``drain_on_signal(factory)`` and enter it in the application's lifespan.
    ``start()``/``run()`` begin the drain from code; a shutdown signal begins it and holds the
    signal back from the server until it is over; leaving the ``async with`` drains if nothing
    did yet. Drains once; everything here is idempotent.
    """

    def __init__(
        self,
        factory: ExecutionEngineFactory,
        *,
        drain_timeout: float | None = None,
        flush_timeout: float = 5.0,
        signals: tuple[int, ...] = SHUTDOWN_SIGNALS,
        on_drain: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.factory = factory
        #: Seconds runs in flight get to finish (None: the factory's ``drain_timeout``).
        self.drain_timeout = drain_timeout
        #: Seconds the tracked streams get to send their last items once runs ended.
        self.flush_timeout = flush_timeout
        self._signals = tuple(signals)
        self._on_drain = on_drain
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous: dict[int, _Handler] = {}
        self._held: list[tuple[int, FrameType | None]] = []
        self._passed_on = False  # the drain is over: signals go straight to the server
        self._streams = 0
        self._streams_done: asyncio.Event | None = None
        self._when_draining: list[Callable[[], object]] = []

    # -- state --------------------------------------------------------------------------------

    @property
    def draining(self) -> bool:
        """True once the drain began (also after it ended): take no new runs or streams."""
        return self._task is not None

    @property
    def drained(self) -> bool:
        """True once the drain is over (the server may close connections)."""
        return self._task is not None and self._task.done()

    @property
    def streams(self) -> int:
        """Tracked streams still open (``subscribe``/``track``)."""
        return self._streams

    # -- draining -----------------------------------------------------------------------------

    def when_draining(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` as the drain begins, before anything else of it (at once if it
        began already): where a server that can stop listening does so."""
        if self._task is not None:
            self._call(callback)
        else:
            self._when_draining.append(callback)

    def start(self) -> None:
        """Begin the drain now, in the background (needs the running event loop)."""
        if self._task is not None:
            return
        self._task = asyncio.get_running_loop().create_task(self._drain(), name="agentengine-drain")
        self._task.add_done_callback(self._drain_ended)
        callbacks, self._when_draining = self._when_draining, []
        for callback in callbacks:
            self._call(callback)

    @staticmethod
    def _call(callback: Callable[[], object]) -> None:
        try:
            callback()
        except Exception as exc:  # one callback failing must not stop the drain
            _log.error("a when_draining callback failed", error=describe_error(exc))

    async def wait(self) -> None:
        """Until the drain is over (returns at once if it never began)."""
        if self._task is not None:
            # Shielded: a caller given up on (its own shutdown cancelled) leaves the drain going.
            await asyncio.shield(self._task)

    async def run(self) -> None:
        """Begin the drain (unless it began) and wait until it is over: what a server stopped
        from code, or one that does not use ``signal.signal`` handlers, calls before closing
        connections."""
        self.start()
        await self.wait()

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        began = loop.time()
        _log.info(
            "draining runs before connections close",
            runs=self.factory.get_factory_metrics()["runs_active"],
            drain_timeout=(
                self.factory.engine_settings.drain_timeout
                if self.drain_timeout is None
                else self.drain_timeout
            ),
        )
        try:
            if self._on_drain is not None:
                await self._on_drain()
            else:
                await self.factory.shutdown(self.drain_timeout)
                await self._flush()
        except Exception as exc:  # the server must still be let go
            _log.error("draining failed; letting the server shut down", error=describe_error(exc))
        _log.info("drained", seconds=round(loop.time() - began, 3), streams_left=self._streams)

    async def _flush(self) -> None:
        # The sink is closed by now, so each tracked stream ends after its last item once the
        # application sent what it holds.
        if self._streams and self._streams_done is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._streams_done.wait(), self.flush_timeout)

    def _drain_ended(self, task: asyncio.Task[None]) -> None:
        self._pass_on()

    # -- streams ------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def track(self) -> AsyncIterator[None]:
        """``async with drain.track():`` around sending a stream of events to a client: the
        drain waits (up to ``flush_timeout``) for the block to end before the server closes
        connections. ``subscribe`` does this for you."""
        if self._streams_done is None:
            self._streams_done = asyncio.Event()
        self._streams += 1
        self._streams_done.clear()
        try:
            yield
        finally:
            self._streams -= 1
            if not self._streams:
                self._streams_done.set()

    def subscribe(self, user_id: str, after: str | None = None) -> AsyncGenerator[StreamItem, None]:
        """``factory.events.subscribe(user_id, after)``, tracked: during a drain it ends after
        the user's last event, and the drain waits for the loop reading it to finish (so the
        events it sends reach the client before the server closes the connection).

        Like the sink's, the subscription is made by this call: its start is fixed here
        (``LIVE``: the events published after the call, even those published before the
        first read), and a cursor the sink refuses raises ``ValueError`` here (a sink may also
        refuse at the first read). So a WebSocket handler subscribes *before* accepting: the
        client, once connected, misses nothing. Close it when done early: ``async with
        contextlib.aclosing(drain.subscribe(...)) as items``."""
        return self._tracked(self.factory.events.subscribe(user_id, after))

    async def _tracked(
        self, items: AsyncGenerator[StreamItem, None]
    ) -> AsyncGenerator[StreamItem, None]:
        async with self.track():
            try:
                async for item in items:
                    yield item
            finally:
                close = getattr(items, "aclose", None)
                if close is not None:
                    await close()

    # -- signals ------------------------------------------------------------------------------

    def install(self) -> None:
        """Wrap the process's handlers of the shutdown signals (main thread only; elsewhere
        this does nothing and only ``run()`` or leaving ``async with`` drains)."""
        if self._previous or threading.current_thread() is not threading.main_thread():
            return
        self._loop = asyncio.get_running_loop()
        for sig in self._signals:
            self._previous[sig] = signal.signal(sig, self._on_signal)

    def restore(self) -> None:
        """Put the wrapped handlers back (where ours is still the one installed)."""
        previous, self._previous = self._previous, {}
        for sig, handler in previous.items():
            if signal.getsignal(sig) == self._on_signal:
                signal.signal(sig, signal.SIG_DFL if handler is None else handler)

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        # Runs between two bytecodes of the main thread (the event loop): only flags and a
        # callback for the loop, never an exception into that code.
        if self._passed_on:
            self._call_previous(sig, frame)
            return
        self._held.append((sig, frame))
        if len(self._held) > 1:
            # Asked again while draining: the server gets both signals now and does what it
            # does on a repeated signal (uvicorn: a second Ctrl+C quits at once).
            self._pass_on()
            return
        loop = self._loop
        if loop is None or loop.is_closed():
            self._pass_on()
            return
        loop.call_soon_threadsafe(self.start)

    def _pass_on(self) -> None:
        self._passed_on = True
        held, self._held = self._held, []
        for sig, frame in held:
            self._call_previous(sig, frame)

    def _call_previous(self, sig: int, frame: FrameType | None) -> None:
        handler = self._previous.get(sig, signal.SIG_DFL)
        if callable(handler):
            handler(sig, frame)
        elif handler in (signal.SIG_DFL, None):
            signal.signal(sig, signal.SIG_DFL)
            signal.raise_signal(sig)
        # SIG_IGN: the process ignored it before; so do we.

    # -- async with ---------------------------------------------------------------------------

    async def __aenter__(self) -> ShutdownDrain:
        self.install()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            # The server shut down for another reason than a signal (code, reload, a request
            # limit): its connections may be gone, but runs still end properly.
            await self.run()
        finally:
            self.restore()


def drain_on_signal(
    factory: ExecutionEngineFactory,
    *,
    drain_timeout: float | None = None,
    flush_timeout: float = 5.0,
    signals: tuple[int, ...] = SHUTDOWN_SIGNALS,
    on_drain: Callable[[], Awaitable[None]] | None = None,
) -> ShutdownDrain:
    """``async with drain_on_signal(factory) as drain:`` in an ASGI app's lifespan: on SIGTERM
    or SIGINT, drain ``factory``'s runs before the server closes connections (see the module
    docstring), then let the server shut down as it would have.

    ``drain_timeout`` overrides the factory's; ``flush_timeout`` bounds the wait for streams
    read through ``drain.subscribe`` once runs ended. ``on_drain`` replaces the whole drain
    procedure (it must shut the factory down itself): for an app that also closes its own
    connections, as agentengine's server does.
    """
    return ShutdownDrain(
        factory,
        drain_timeout=drain_timeout,
        flush_timeout=flush_timeout,
        signals=signals,
        on_drain=on_drain,
    )


# -- answering 503 ----------------------------------------------------------------------------

_Scope = Mapping[str, Any]
_Receive = Callable[[], Awaitable[Mapping[str, Any]]]
_Send = Callable[[Mapping[str, Any]], Awaitable[None]]

#: The WebSocket close code for "try again later" (RFC 6455 registry).
CLOSE_TRY_AGAIN_LATER = 1013


class DrainingErrorMiddleware:
    """ASGI middleware: an ``EngineClosedError`` (a ``DrainingError`` while the factory
    drains) that escapes the application before it answered becomes ``503`` with
    ``Retry-After`` and a JSON body ``{"error": "shutting_down", "message", "retry_after"}``;
    on a WebSocket not yet accepted, a close with ``1013`` (try again later). A
    ``BackendUnavailableError`` (a service runs live on is unreachable, e.g. the Redis of a run
    queue) is answered the same way, with ``{"error": "unavailable", "dependency", "message",
    "retry_after"}``.

    For any ASGI app: ``app = DrainingErrorMiddleware(app)``; Starlette and FastAPI:
    ``middleware=[Middleware(DrainingErrorMiddleware)]`` (``app.add_middleware``). An
    exception raised after the response started is raised again, untouched.
    """

    def __init__(self, app: Callable[[Any, Any, Any], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        """Run the application; answer 503 if it raised ``EngineClosedError`` first."""
        kind = scope.get("type")
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        answered = False

        async def watching_send(message: Mapping[str, Any]) -> None:
            nonlocal answered
            answered = answered or message.get("type") in _ANSWERS
            await send(message)

        try:
            await self.app(scope, receive, watching_send)
        except (EngineClosedError, BackendUnavailableError) as exc:
            if answered:
                raise
            retry_after = int(getattr(exc, "retry_after", 1))
            if kind == "websocket":
                await send({"type": "websocket.close", "code": CLOSE_TRY_AGAIN_LATER})
                return
            if isinstance(exc, BackendUnavailableError):
                body = {"error": "unavailable", "dependency": exc.dependency, "message": str(exc)}
                await send_unavailable(send, retry_after, body)
            else:
                await send_unavailable(send, retry_after)


_ANSWERS = frozenset(
    {"http.response.start", "websocket.accept", "websocket.close", "websocket.http.response.start"}
)


async def send_unavailable(
    send: _Send, retry_after: int, answer: Mapping[str, Any] | None = None
) -> None:
    """Answer ``503`` with ``Retry-After: retry_after`` on ASGI ``send``: ``shutting_down``,
    or the JSON ``answer`` given (``retry_after`` added to it)."""
    if answer is None:
        answer = {
            "error": "shutting_down",
            "message": "the server is shutting down and takes no new runs; retry later",
        }
    body = json.dumps({**answer, "retry_after": retry_after}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(retry_after).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
