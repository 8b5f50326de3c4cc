"""``ServerState``: what every route and connection of one app shares, and its lifecycle.

The factory, the run table (``RunManager``), the event streams (``StreamHub``), the token
verifier, the counters and the live connections; the steps every transport takes the same way
(authenticating a caller, starting a run, where a new stream starts); the housekeeping loop;
and the graceful shutdown. ``server_state(request)`` finds it from a request or WebSocket.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any, Protocol

import structlog
from agentengine import LIVE, ExecutionEngineFactory
from prometheus_client import CollectorRegistry
from starlette.requests import HTTPConnection

from agentengine_server.auth import AuthError, TokenClaims, TokenVerifier, bearer_token
from agentengine_server.errors import RUN_START_ERRORS, ApiError, run_error, too_many_connections
from agentengine_server.memory import resident_bytes, trim_heap
from agentengine_server.metrics import ServerMetrics, metrics_registry
from agentengine_server.requests import RunRequest
from agentengine_server.runs import RunManager, RunRecord
from agentengine_server.settings import RUN_RECORD_KEYS, ServerSettings
from agentengine_server.streaming import EventPump, FrameEncoder, StreamHub

__all__ = ["LiveConnection", "ServerState", "StreamSlot", "server_state"]

_log = structlog.get_logger("agentengine_server")


class LiveConnection(Protocol):
    """What the shutdown needs of a live connection (``websocket.Connection``)."""

    @property
    def finished(self) -> asyncio.Event:
        """Set once the connection is over."""
        ...

    def abort(self) -> None:
        """Stop the connection at once (it did not finish within the flush timeout)."""
        ...


class StreamSlot:
    """One event stream's place among its user's (``ServerState.open_stream``): ``release``
    gives it back, once, however often it is called."""

    __slots__ = ("_state", "transport", "user_id")

    def __init__(self, state: ServerState | None, user_id: str, transport: str) -> None:
        self._state = state
        self.user_id = user_id
        self.transport = transport

    def release(self) -> None:
        """Give the place back (the stream ended, or never started)."""
        state, self._state = self._state, None
        if state is not None:
            state._close_stream(self.user_id, self.transport)


class ServerState:
    """Everything the routes share: the factory, runs, auth, counters, live connections."""

    def __init__(
        self,
        factory: ExecutionEngineFactory,
        verifier: TokenVerifier,
        settings: ServerSettings,
        *,
        dev: bool,
    ) -> None:
        self.factory = factory
        self.verifier = verifier
        self.settings = settings
        self.dev = dev
        # The [server] finished_runs_* keys are aliases of the [engine] ones: those set here
        # replace the factory's.
        aliases = RUN_RECORD_KEYS & settings.model_fields_set
        self.runs = RunManager(factory, **{key: getattr(settings, key) for key in aliases})
        self.metrics = ServerMetrics(registry=CollectorRegistry(auto_describe=False))
        #: This app's metrics (``GET /metrics``): a registry of its own, never the global one.
        self.registry, self.figures = metrics_registry(factory, self.metrics, self.memory_figures)
        self.encoder = FrameEncoder(max_bytes=settings.frame_cache_bytes)
        self.streams = StreamHub(
            factory.events,
            self.encoder,
            capacity=settings.send_buffer,
            capacity_bytes=settings.send_buffer_bytes,
            stall_timeout=settings.slow_client_timeout,
        )
        self.connections: set[LiveConnection] = set()
        #: Open event streams (WebSocket and SSE) per user; users without one are not kept.
        self._streams: dict[str, int] = {}
        self.closing = False
        self._shutdown_done: asyncio.Event | None = None

    # -- auth ---------------------------------------------------------------------------------

    def authenticate(self, token: str | None) -> str:
        """The user id of ``token``; ``ApiError`` 401 otherwise."""
        return self.token_claims(token).user_id

    def token_claims(self, token: str | None) -> TokenClaims:
        """The claims of ``token`` (user id, expiry); ``ApiError`` 401 otherwise, counted as
        an auth failure."""
        try:
            return self.verifier.claims(token)
        except AuthError as exc:
            self.metrics.auth_failures += 1
            raise ApiError(
                401,
                "unauthorized",
                str(exc),
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            ) from None

    def request_user(self, request: HTTPConnection, *, allow_query: bool = False) -> str:
        """The caller of an HTTP request (``Authorization: Bearer``; ``?token=`` if allowed)."""
        return self.request_claims(request, allow_query=allow_query).user_id

    def request_claims(self, request: HTTPConnection, *, allow_query: bool = False) -> TokenClaims:
        """The verified token claims of an HTTP request's caller."""
        token = bearer_token(request.headers.get("authorization"))
        if token is None and allow_query:
            token = request.query_params.get("token")
        return self.token_claims(token)

    # -- runs ---------------------------------------------------------------------------------

    async def start_run(self, user_id: str, request: RunRequest) -> RunRecord:
        """Start the run ``request`` asks for (checked by ``requests.run_request``), for
        ``user_id``, and count it; ``ApiError`` (``errors.run_error``) when it cannot start."""
        accepted = time.time()
        try:
            record = await self.runs.start(
                user_id, request.agent, request.input, thread_id=request.thread_id
            )
        except RUN_START_ERRORS as exc:
            raise run_error(exc) from None
        self.metrics.runs_started += 1
        on_first_event = self.factory.timings.first_event
        if on_first_event is not None and not self.factory.runs.queues:
            # Executed here: its agent_started went out before submit_run returned (a queued
            # run's first event is the worker's to time).
            on_first_event(record.agent, time.time() - accepted)
        return record

    # -- streams ------------------------------------------------------------------------------

    def start_cursor(self, user_id: str, requested: str | None) -> str:
        """Where a new stream starts: after ``requested`` (the client's resume cursor) if it
        gave one; else ``LIVE``: only the events published from now on."""
        return requested or LIVE

    def open_stream(self, user_id: str, transport: str) -> StreamSlot:
        """Count a new event stream of ``user_id`` over ``transport`` (``ws`` or ``sse``): the
        one place both transports are counted (``clients_connected``) and bounded. Past
        ``max_connections_per_user`` streams of that user (0: no limit) it is refused, counted
        in ``connections_refused``: ``ApiError`` 429 ``too_many_connections``. The caller
        releases the returned slot when the stream ends."""
        held = self._streams.get(user_id, 0)
        limit = self.settings.max_connections_per_user
        if limit and held >= limit:
            self.metrics.connections_refused[transport] += 1
            _log.info(
                "event stream refused: too many connections for this user",
                user_id=user_id,
                transport=transport,
                limit=limit,
            )
            raise too_many_connections(limit)
        self._streams[user_id] = held + 1
        self.metrics.clients_connected[transport] += 1
        return StreamSlot(self, user_id, transport)

    def _close_stream(self, user_id: str, transport: str) -> None:
        self.metrics.clients_connected[transport] -= 1
        held = self._streams.get(user_id, 0) - 1
        if held > 0:
            self._streams[user_id] = held
        else:
            self._streams.pop(user_id, None)

    def pump(self, user_id: str, after: str | None, on_overflow: Any = None) -> EventPump:
        """A started pump of ``user_id``'s events after ``after``."""
        return self.streams.open(user_id, after, on_overflow)

    # -- health -------------------------------------------------------------------------------

    def unready_dependencies(self) -> list[dict[str, Any]]:
        """The items of the plugins' ``agentengine_status`` reports marked ``"ready": False``
        (a dependency the server cannot serve without, such as the Redis of the event sink),
        each with its plugin's name. A report that raises is not counted: it is information."""
        unready: list[dict[str, Any]] = []
        for plugin, _obj, report in self.factory.plugins.implementations("agentengine_status"):
            try:
                items = list(report() or ())
            except Exception as exc:
                _log.debug("status report failed", plugin=plugin, error=repr(exc))
                continue
            unready += [
                {
                    "plugin": plugin,
                    "name": item.get("name"),
                    "state": item.get("state"),
                    "detail": item.get("detail"),
                }
                for item in items
                if isinstance(item, Mapping) and item.get("ready") is False
            ]
        return unready

    # -- housekeeping -------------------------------------------------------------------------

    async def housekeeping(self) -> None:
        """Forever, every ``RunManager.sweep_interval`` seconds: forget the users idle past
        ``finished_runs_ttl`` (``RunManager.sweep``), then, if the server did anything since
        the last time (``trim_memory``), return freed heap memory to the operating system
        (``memory.trim_heap``): so that RSS comes down after a burst, and again once the TTL
        passed, instead of staying at its peak."""
        last: tuple[int, ...] | None = None
        while True:
            await asyncio.sleep(self.runs.sweep_interval)
            self.runs.sweep()
            if not self.settings.trim_memory:
                continue
            mark = self._activity()
            if mark != last:
                last = mark
                trim_heap()

    def _activity(self) -> tuple[int, ...]:
        """Counters that move whenever the server allocates or frees much: runs started and
        ended, records and users of the run table, frames delivered."""
        factory = self.factory.get_factory_metrics()
        return (
            self.metrics.runs_started,
            int(factory.get("runs", 0)),
            self.runs.finished_count,
            len(self.runs.user_ids()),
            sum(self.metrics.events_delivered.values()),
        )

    def memory_figures(self) -> dict[str, float]:
        """What the server holds, by bound, in bytes (for ``GET /metrics``)."""
        figures: dict[str, float] = {
            "finished_runs": self.runs.finished_count,
            "finished_runs_bytes": self.runs.finished_bytes,
            "run_table_users": len(self.runs.user_ids()),
            "frame_cache_bytes": self.encoder.retained_bytes,
        }
        retained = getattr(self.factory.events, "retained_bytes", None)
        if isinstance(retained, int):
            figures["events_retained_bytes"] = retained
        rss = resident_bytes()
        if rss is not None:
            figures["resident_bytes"] = rss
        return figures

    # -- shutdown -----------------------------------------------------------------------------

    async def shutdown(self) -> None:
        """Take no new runs, drain runs within the factory's drain deadline (leftovers are
        cancelled and still end with their terminal event), let every connection send what it
        has, then close each with a close frame. Idempotent; concurrent callers all wait."""
        if self._shutdown_done is not None:
            await self._shutdown_done.wait()
            return
        self._shutdown_done = asyncio.Event()
        self.closing = True
        self.runs.closing = True
        started = time.monotonic()
        _log.info(
            "shutting down: draining runs",
            runs=self.runs.active,
            drain_timeout=self.factory.engine_settings.drain_timeout,
            connections=len(self.connections),
        )
        try:
            # Draining ends with the sink closing: every stream then ends after its last event.
            await self.factory.shutdown()
            await self.runs.wait_finished()
            waiting = [c.finished.wait() for c in list(self.connections)]
            if waiting:
                _, pending = await asyncio.wait(
                    [asyncio.ensure_future(w) for w in waiting],
                    timeout=self.settings.shutdown_flush_timeout,
                )
                for task in pending:
                    task.cancel()
                for conn in list(self.connections):
                    conn.abort()
            _log.info("shutdown complete", seconds=round(time.monotonic() - started, 3))
        finally:
            self._shutdown_done.set()


def server_state(conn: HTTPConnection) -> ServerState:
    """The ``ServerState`` of the app serving ``conn`` (a request or a WebSocket)."""
    state: ServerState = conn.app.state.agentengine
    return state
