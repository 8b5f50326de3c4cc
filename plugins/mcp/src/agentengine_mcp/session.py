"""One user's session with one MCP server.

An MCP session carries one identity (the headers or environment it was opened with), so a
session belongs to exactly one user's engine and is never shared. It opens lazily, on the
first lookup of one of the server's tools, and closes with the engine.

The ``mcp.Client`` is an async context manager whose task group must be entered and left by
the same task, so each open session has an *owner* task that holds the client open until the
session closes; tool calls run in the callers' tasks and talk to the server through it.

Failures: a server that cannot start, or that goes away (its process killed, its HTTP
endpoint gone), fails the calls in flight promptly (the SDK ends them with "connection
closed") and marks the session failed. The next call reopens it, no sooner than a delay that
doubles with each consecutive failure (``retry_initial`` up to ``retry_max``).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import httpx2
import structlog
from agentengine.errors import AgentEngineError
from agentengine.telemetry import annotate_span, traced
from mcp import Client, StdioServerParameters, types as mcp_types
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import SubscriptionLost
from mcp.shared.exceptions import MCPError
from mcp.types.version import MODERN_PROTOCOL_VERSIONS

from agentengine_mcp.config import MCPServerConfig, Template, TemplateError

if TYPE_CHECKING:
    from agentengine import UserExecutionContext

__all__ = ["MCPSession", "SessionState"]

_log = structlog.get_logger("agentengine_mcp.session")

# How long close() waits for the owner task to shut the transport down before cancelling it.
# The SDK bounds its own stdio shutdown (stdin close, SIGTERM, SIGKILL) by about six seconds.
_CLOSE_GRACE = 8.0
_MAX_LIST_PAGES = 100
_STDERR_LINES = 20


class SessionState(enum.StrEnum):
    """Where a session is in its life."""

    IDLE = "idle"  # not opened yet (sessions open on first use)
    CONNECTING = "connecting"
    CONNECTED = "connected"
    FAILED = "failed"  # the last attempt failed; the next call retries after the backoff
    CLOSED = "closed"


class SessionOpenError(AgentEngineError):
    """The session could not be opened (or was closed); the message is for the user."""


class ConnectionLostError(AgentEngineError):
    """The server went away during a call; the message is for the user."""


class _StderrTail:
    """The last lines a stdio server wrote to stderr, kept for error messages.

    A pipe read by the event loop: bounded memory however chatty the server is.
    """

    def __init__(self) -> None:
        read_fd, write_fd = os.pipe()
        self.writer = os.fdopen(write_fd, "w")
        self._reader = os.fdopen(read_fd, "rb")
        self._lines: deque[str] = deque(maxlen=_STDERR_LINES)
        self._partial = b""
        self._transport: asyncio.ReadTransport | None = None

    async def start(self) -> None:
        tail = self

        class _Protocol(asyncio.Protocol):
            def data_received(self, data: bytes) -> None:
                tail._feed(data)

        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.connect_read_pipe(_Protocol, self._reader)

    def _feed(self, data: bytes) -> None:
        *complete, self._partial = (self._partial + data).split(b"\n")
        for line in complete:
            text = line.decode("utf-8", "replace").rstrip()
            if text:
                self._lines.append(text)
        if len(self._partial) > 4096:  # a line that never ends: keep its start
            self._lines.append(self._partial[:200].decode("utf-8", "replace"))
            self._partial = b""

    def close_writer(self) -> None:
        """Drop the parent's copy of the write end once the child has its own."""
        with contextlib.suppress(OSError):
            self.writer.close()

    def close(self) -> None:
        self.close_writer()
        if self._transport is not None:
            self._transport.close()
        else:
            with contextlib.suppress(OSError):
                self._reader.close()

    def text(self, lines: int = 3) -> str:
        return " | ".join(list(self._lines)[-lines:])


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        leaves = []
        stack: list[BaseException] = [exc]
        while stack:
            item = stack.pop()
            if isinstance(item, BaseExceptionGroup):
                stack.extend(item.exceptions)
            else:
                leaves.append(item)
        if leaves:
            return "; ".join(_describe(leaf) for leaf in leaves)
    if isinstance(exc, MCPError) and exc.code == mcp_types.CONNECTION_CLOSED:
        return "the server closed the connection"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class MCPSession:
    """One user's connection to one server: opened lazily, reopened after failures.

    ``context`` is the user's context; the server's ``env``/``headers`` templates are rendered
    from it when the session opens, never from anything else.
    """

    def __init__(
        self,
        config: MCPServerConfig,
        context: UserExecutionContext,
        *,
        environ: Mapping[str, str] | None = None,
        on_change: Callable[[MCPSession], None] | None = None,
    ) -> None:
        self.config = config
        self.context = context
        self._environ = environ
        self._on_change = on_change
        self.state = SessionState.IDLE
        #: Why the last attempt failed (None while healthy).
        self.last_error: str | None = None
        #: Consecutive failures (reset by a successful open).
        self.failures = 0
        #: ``time.monotonic()`` before which the session is not reopened.
        self.retry_at = 0.0
        #: The backoff chosen after the last failure (seconds).
        self.retry_delay = 0.0
        #: The protocol version of the open connection.
        self.protocol_version: str | None = None
        self.opened = 0  # how many times the session was opened (for status and tests)
        self._client: Client | None = None
        self._generation = 0
        self._owner: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None
        self._lock = asyncio.Lock()
        self._tools: dict[str, mcp_types.Tool] | None = None
        self._tools_version = 0  # bumped by tools/list_changed
        self._tools_fetched_version = -1
        self._stderr: _StderrTail | None = None
        self._ready: asyncio.Future[Client] | None = None

    # -- status -------------------------------------------------------------------------------

    @property
    def where(self) -> str:
        """``server 'x' (stdio: cmd args)``, for messages."""
        return f"MCP server {self.config.name!r} ({self.config.transport}: {self.config.target})"

    def retry_in(self) -> float:
        """Seconds until the session may be reopened (0 when it may be now)."""
        return max(0.0, self.retry_at - time.monotonic())

    def describe(self) -> dict[str, Any]:
        """State, error and retry time, for ``agentengine mcp status``."""
        state = self.state.value
        retry_in = self.retry_in() if self.state is SessionState.FAILED else 0.0
        if self.state is SessionState.FAILED and retry_in > 0:
            state = "retrying"
        return {
            "server": self.config.name,
            "user_id": self.context.user_id,
            "state": state,
            "error": self.last_error,
            "failures": self.failures,
            "retry_in": round(retry_in, 3),
            "tools": len(self._tools) if self._tools is not None else None,
            "opened": self.opened,
        }

    def _changed(self) -> None:
        if self._on_change is not None:
            with contextlib.suppress(Exception):
                self._on_change(self)

    # -- opening ------------------------------------------------------------------------------

    async def client(self) -> tuple[Client, int]:
        """The open client and its generation; opens (or reopens) the session if needed.

        Raises ``SessionOpenError`` with a message naming the server when it cannot.
        """
        client = self._client
        if client is not None and self.state is SessionState.CONNECTED:
            return client, self._generation  # hot path: no lock
        async with self._lock:
            if self._client is not None and self.state is SessionState.CONNECTED:
                return self._client, self._generation
            if self.state is SessionState.CLOSED:
                raise SessionOpenError(f"{self.where}: the session was closed with its engine")
            wait = self.retry_in()
            if wait > 0:
                # A caller waits out a short backoff (the server may be back by then); a long
                # one fails the call at once instead of eating its timeout.
                if wait > self.config.call_timeout / 2:
                    raise SessionOpenError(
                        f"{self.where} is unavailable ({self.last_error}); it will be tried "
                        f"again in {wait:.1f}s"
                    )
                await asyncio.sleep(wait)
            reopening = self.opened > 0 or self.failures > 0
            with traced(
                f"mcp.session.{'reconnect' if reopening else 'open'} {self.config.name}",
                {
                    "agentengine.mcp.server": self.config.name,
                    "agentengine.mcp.transport": self.config.transport,
                    "agentengine.mcp.reconnect": reopening,
                    "agentengine.mcp.failures": self.failures,
                },
            ):
                await self._open()
            assert self._client is not None
            return self._client, self._generation

    def _render(self, templates: Mapping[str, str], what: str) -> dict[str, str]:
        rendered = {}
        for key, raw in templates.items():
            try:
                rendered[key] = Template(raw).render(self.context, self._environ)
            except TemplateError as exc:
                raise SessionOpenError(f"{self.where}: {what} {key!r}: {exc}") from None
        return rendered

    def _http_headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        token_env = self.config.token_env
        if token_env:
            env = os.environ if self._environ is None else self._environ
            token = env.get(token_env)
            if not token:
                raise SessionOpenError(
                    f"{self.where}: environment variable {token_env!r} (its token_env) is "
                    "not set; export the bearer token in it"
                )
            headers["Authorization"] = f"Bearer {token}"
        # Explicit headers win, so a per-user Authorization template overrides token_env.
        headers.update(self._render(self.config.headers, "header"))
        return headers

    async def _open(self) -> None:
        """Start the owner task and wait for the handshake (at most ``startup_timeout``)."""
        await self._teardown()
        config = self.config
        # Templates first: a missing per-user value is the caller's error, not the server's,
        # so it neither starts anything nor counts as a server failure.
        if config.command:
            env = self._render(config.env, "env")
            params: Any = StdioServerParameters(
                command=config.command, args=list(config.args), env=env, cwd=config.cwd
            )
        elif config.server is not None:
            params = None
        else:
            params = self._http_headers()
        self.state = SessionState.CONNECTING
        self._generation += 1
        generation = self._generation
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[Client] = loop.create_future()
        stop = self._stop = asyncio.Event()
        self._ready = ready
        self._owner = loop.create_task(
            self._own(params, ready, stop, generation),
            name=f"agentengine-mcp-{config.name}-{self.context.user_id}",
        )
        try:
            async with asyncio.timeout(config.startup_timeout):
                client = await asyncio.shield(ready)
                await self._refresh_tools(client)
                self._client = client
                self.protocol_version = client.protocol_version
                self.state = SessionState.CONNECTED
        except asyncio.CancelledError:
            await self._teardown()
            self.state = SessionState.IDLE if self.failures == 0 else SessionState.FAILED
            raise
        except Exception as exc:
            if isinstance(exc, TimeoutError) and not ready.done():
                reason = (
                    f"did not complete the MCP handshake within {config.startup_timeout:g}s "
                    "(startup_timeout)"
                )
            elif isinstance(exc, TimeoutError):
                reason = f"did not list its tools within {config.startup_timeout:g}s"
            else:
                verb = "failed to start" if config.command else "could not be reached"
                reason = f"{verb}: {_describe(exc)}"
            await self._teardown()  # first: the server's last stderr lines arrive meanwhile
            stderr = self._stderr.text() if self._stderr is not None else ""
            if stderr:
                reason += f" (stderr: {stderr})"
            self._fail(reason)
            raise SessionOpenError(
                f"{self.where} {reason}; it will be tried again in {self.retry_in():.1f}s"
            ) from None
        self.failures = 0
        self.last_error = None
        self.retry_at = 0.0
        self.opened += 1
        _log.info(
            "mcp session opened",
            server=config.name,
            user_id=self.context.user_id,
            tools=len(self._tools or ()),
        )
        self._changed()

    async def _own(
        self,
        params: StdioServerParameters | dict[str, str] | None,
        ready: asyncio.Future[Client],
        stop: asyncio.Event,
        generation: int,
    ) -> None:
        """Hold the client open until ``stop`` (runs as the owner task)."""
        config = self.config
        try:
            async with contextlib.AsyncExitStack() as stack:
                if isinstance(params, StdioServerParameters):
                    tail = self._stderr = _StderrTail()
                    stack.callback(tail.close)
                    await tail.start()
                    transport: Any = stdio_client(params, errlog=tail.writer)
                elif config.server is not None:
                    transport = config.server
                else:
                    # Reads stay open long (a server may hold an event stream open); the
                    # engine's per-call timeout is what bounds a call.
                    timeout = httpx2.Timeout(config.startup_timeout, read=300.0)
                    http = httpx2.AsyncClient(headers=params, timeout=timeout)
                    await stack.enter_async_context(http)
                    transport = streamable_http_client(str(config.url), http_client=http)
                client = Client(
                    transport,
                    message_handler=self._on_message,
                    client_info=mcp_types.Implementation(name="agentengine-mcp", version="0.1.0"),
                    # The plugin keeps its own tool cache, refreshed on tools/list_changed.
                    cache=None,
                )
                try:
                    await stack.enter_async_context(client)
                finally:
                    if self._stderr is not None:
                        self._stderr.close_writer()
                ready.set_result(client)
                listener = None
                if config.watch_tools and client.protocol_version in MODERN_PROTOCOL_VERSIONS:
                    listener = asyncio.get_running_loop().create_task(
                        self._listen(client, generation)
                    )
                try:
                    await stop.wait()
                finally:
                    if listener is not None:
                        listener.cancel()
                        await asyncio.wait({listener})
        except asyncio.CancelledError:
            if not ready.done():
                ready.cancel()
            raise
        except Exception as exc:
            if not ready.done():
                ready.set_exception(exc)
            elif not stop.is_set():
                self._lost(generation, f"the connection was lost: {_describe(exc)}")
            return
        if not stop.is_set():  # pragma: no cover - the client only returns once stopped
            self._lost(generation, "the connection ended")

    async def _listen(self, client: Client, generation: int) -> None:
        """Follow tools/list_changed on 2026-era connections (older ones notify directly).

        The subscription is also how a server that goes away while the session is idle is
        noticed: its stream drops, and the session is marked failed at once, so the next call
        reopens it instead of failing on a dead connection.
        """
        try:
            async with client.listen(tools_list_changed=True) as subscription:
                async for _event in subscription:
                    self._tools_version += 1
        except asyncio.CancelledError:
            raise
        except (SubscriptionLost, MCPError, OSError) as exc:
            if isinstance(exc, MCPError) and exc.code != mcp_types.CONNECTION_CLOSED:
                _log.debug("mcp server refused tools/list_changed", error=_describe(exc))
                return
            self._lost(generation, f"the connection was lost while idle: {_describe(exc)}")
        except Exception as exc:
            _log.debug("mcp tools/list_changed subscription ended", error=_describe(exc))
        if _transport_closed(client):
            self._lost(generation, "the connection was lost while idle")

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, mcp_types.ToolListChangedNotification):
            self._tools_version += 1
            _log.debug("mcp tool list changed", server=self.config.name)

    def _fail(self, reason: str) -> None:
        self.failures += 1
        delay = min(self.config.retry_initial * 2 ** (self.failures - 1), self.config.retry_max)
        self.retry_delay = delay
        self.retry_at = time.monotonic() + delay
        self.last_error = reason
        self.state = SessionState.FAILED
        self._client = None
        _log.warning(
            "mcp server failed",
            server=self.config.name,
            user_id=self.context.user_id,
            reason=reason,
            retry_in=round(delay, 3),
        )
        self._changed()

    def _lost(self, generation: int, reason: str) -> None:
        """The connection of ``generation`` broke: fail the session once, stop its owner."""
        if generation != self._generation or self.state is not SessionState.CONNECTED:
            return
        stderr = self._stderr.text() if self._stderr is not None else ""
        self._fail(reason + (f" (stderr: {stderr})" if stderr else ""))
        if self._stop is not None:
            self._stop.set()

    async def _teardown(self) -> None:
        owner, stop, ready = self._owner, self._stop, self._ready
        self._owner = self._stop = self._ready = None
        self._client = None
        if owner is None:
            return
        if stop is not None:
            stop.set()
        if ready is not None and not ready.done():
            # Still in the handshake, which does not watch ``stop``: cancel it (the SDK shields
            # its own bounded process shutdown from the cancellation).
            owner.cancel()
        if not owner.done():
            _done, pending = await asyncio.wait({owner}, timeout=_CLOSE_GRACE)
            if pending:
                owner.cancel()
                await asyncio.wait({owner}, timeout=_CLOSE_GRACE)
        if owner.done() and not owner.cancelled():
            owner.exception()  # retrieved: _own reports its errors through the session state

    async def close(self) -> None:
        """Close the session (and stop a stdio server). Idempotent."""
        async with self._lock:
            if self.state is SessionState.CLOSED:
                return
            self.state = SessionState.CLOSED
            await self._teardown()
            self._changed()

    # -- tools and calls ------------------------------------------------------------------------

    async def _refresh_tools(self, client: Client) -> None:
        version = self._tools_version
        tools: dict[str, mcp_types.Tool] = {}
        cursor: str | None = None
        for _ in range(_MAX_LIST_PAGES):
            page = await client.list_tools(cursor=cursor, cache_mode="bypass")
            for item in page.tools:
                tools[item.name] = item
            cursor = page.next_cursor
            if cursor is None:
                break
        self._tools = tools
        self._tools_fetched_version = version

    async def list_tools(self) -> dict[str, mcp_types.Tool]:
        """The server's tools (cached; refreshed after tools/list_changed)."""
        client, generation = await self.client()
        if self._tools is None or self._tools_fetched_version != self._tools_version:
            try:
                async with asyncio.timeout(self.config.startup_timeout):
                    await self._refresh_tools(client)
            except (TimeoutError, MCPError, OSError) as exc:
                if _is_connection_error(exc):
                    self._lost(generation, f"the connection was lost: {_describe(exc)}")
                raise SessionOpenError(
                    f"{self.where}: listing tools failed: {_describe(exc)}"
                ) from None
        assert self._tools is not None
        return self._tools

    @property
    def tools_version(self) -> tuple[int, int]:
        """Changes whenever the cached tool list may have changed."""
        return (self._generation, self._tools_fetched_version)

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> mcp_types.CallToolResult:
        """Call ``name`` on the server through this session.

        Raises ``SessionOpenError`` (cannot open), ``ConnectionLostError`` (the server went away
        during the call; the session reopens on the next one) or ``MCPError`` (the server
        refused the request).
        """
        annotate_span({"agentengine.mcp.server": self.config.name})  # on the tool call's span
        client, generation = await self.client()
        if _transport_closed(client):
            # The server went away while idle (a stdio process killed between calls): nothing
            # was sent yet, so reopen now rather than fail this call.
            self._lost(generation, "the connection was lost while idle")
            client, generation = await self.client()
        try:
            return await client.call_tool(name, arguments)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not _is_connection_error(exc):
                raise
            reason = f"the connection was lost during the call to {name!r}: {_describe(exc)}"
            self._lost(generation, reason)
            raise ConnectionLostError(
                f"{self.where}: {reason}; the session will be reopened on the next call"
            ) from None


def _transport_closed(client: Client) -> bool:
    """True when the client's connection has ended (its receive loop saw end-of-stream).

    The SDK has no public flag for this; its dispatcher's ``_closed`` is read defensively
    (absent means "not known to be closed", and the call path still handles a dead link).
    """
    try:
        dispatcher = getattr(client.session, "_dispatcher", None)
    except RuntimeError:  # the client was exited
        return True
    return bool(getattr(dispatcher, "_closed", False))


def _is_connection_error(exc: BaseException) -> bool:
    """True for failures of the connection itself (as opposed to an answer from the server)."""
    if isinstance(exc, MCPError):
        return exc.code == mcp_types.CONNECTION_CLOSED
    # Anything else escaping the SDK (httpx errors, broken streams, OSError) is transport.
    return not isinstance(exc, TimeoutError | ValueError)
