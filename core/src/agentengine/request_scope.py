"""Request scoping: live resources a run opens on first use and closes when it ends.

Plugins declare *scoped resources* by name with the ``agentengine_register_resources`` hook; a
resource is a factory of async context managers (a database connection, an HTTP client with
the user's credentials, a transaction)::

    @contextlib.asynccontextmanager
    async def open_db(run: RunContext):
        async with aiosqlite.connect(path) as conn:
            yield conn

    class DbPlugin:
        @hookimpl
        def agentengine_register_resources(self, registry):
            registry.add("db", open_db)

An agent or tool then writes ``conn = await run.scope["db"]``. The built-in ``request_scope``
plugin gives every run its own ``RequestScope``: a resource is opened the first time the run
asks for it (concurrent first uses in one run share one opening), never shared with another
run, and every opened resource is closed when the run ends, whatever the outcome (success,
failure, timeout, cancellation, engine cleanup), in reverse order of opening. Each context
manager's ``__aexit__`` receives the run's exception (None on success), so a transaction can
commit or roll back accordingly. A close that raises or hangs longer than ``close_timeout`` is
logged and skipped: it never changes the run's result.

Configuration (``agentengine.toml``)::

    [request_scope]
    close_timeout = 10.0    # seconds each resource gets to close
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

import structlog
from pydantic import BaseModel, ConfigDict, Field

from agentengine.definitions.resources import ResourceRegistry, unknown_resource_error
from agentengine.errors import (
    EngineClosedError,
    ScopedResourceError,
    UnknownResourceError,
    describe_error,
)
from agentengine.plugins.extensions import cancelling
from agentengine.plugins.hooks import hookimpl

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from agentengine.config import Settings
    from agentengine.context import UserExecutionContext
    from agentengine.definitions.run import RunContext
    from agentengine.runtime.engine import UserExecutionEngine

__all__ = [
    "RequestScope",
    "RequestScopeExtension",
    "RequestScopePlugin",
    "RequestScopeSettings",
    "ScopedResourceError",
    "UnknownResourceError",
]

_log = structlog.get_logger("agentengine.request_scope")


class RequestScopeSettings(BaseModel):
    """The ``[request_scope]`` table."""

    model_config = ConfigDict(extra="forbid")

    close_timeout: float = Field(default=10.0, gt=0)


class RequestScope:
    """One run's scoped resources: ``await scope["db"]`` opens ``db`` on first use.

    ``name in scope`` and iteration cover the declared names; ``opened`` lists those opened
    so far, in order.
    """

    __slots__ = ("_close_timeout", "_closed", "_opening", "_registry", "_run", "_stack", "_values")

    def __init__(self, run: RunContext, registry: ResourceRegistry, close_timeout: float) -> None:
        self._run = run
        self._registry = registry
        self._close_timeout = close_timeout
        self._values: dict[str, Any] = {}
        self._stack: list[tuple[str, AbstractAsyncContextManager[Any]]] = []
        self._opening: dict[str, asyncio.Future[Any]] = {}
        self._closed = False

    def __getitem__(self, name: str) -> Awaitable[Any]:
        """An awaitable of resource ``name`` (``await run.scope["db"]``). Raises
        ``UnknownResourceError`` (a KeyError) at once for an undeclared name."""
        if name not in self._registry:
            raise unknown_resource_error(name, self._registry.names())
        return self.get(name)

    async def get(self, name: str) -> Any:
        """Resource ``name``, opened now if this run has not opened it yet."""
        if self._closed:
            raise EngineClosedError(
                f"the scope of run {self._run.run_id} is closed; scoped resources are only "
                "available while the run is going on"
            )
        if name in self._values:
            return self._values[name]
        pending = self._opening.get(name)
        if pending is not None:  # another task of this run is opening it: share that opening
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if pending.cancelled() and task is not None and not task.cancelling():
                    return await self.get(name)  # only the opener was cancelled: open anew
                raise
        resource = self._registry.get(name)
        if resource is None:
            raise unknown_resource_error(name, self._registry.names())
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._opening[name] = future
        try:
            manager = resource.open(self._run)
            if not (hasattr(manager, "__aenter__") and hasattr(manager, "__aexit__")):
                raise ScopedResourceError(
                    f"scoped resource {name!r} (plugin {resource.plugin!r}): the factory returned "
                    f"{type(manager).__name__}, not an async context manager; decorate it with "
                    "@contextlib.asynccontextmanager"
                )
            value = await manager.__aenter__()
        except BaseException as exc:
            del self._opening[name]
            if isinstance(exc, asyncio.CancelledError) and cancelling(self._run):
                future.cancel()  # the run was cancelled while opening
                raise
            if isinstance(exc, ScopedResourceError):
                error = exc
            else:  # anything else (SystemExit, KeyboardInterrupt ...) fails the opening
                error = ScopedResourceError(
                    f"scoped resource {name!r} (plugin {resource.plugin!r}) failed to open: "
                    f"{describe_error(exc)}"
                )
            future.set_exception(error)
            future.exception()  # retrieved here; waiters (if any) still receive it
            if error is exc:
                raise
            raise error from exc
        del self._opening[name]
        if self._closed:  # the run ended while this (a straggling task) was opening it
            with contextlib.suppress(BaseException):  # closing a leftover
                await manager.__aexit__(None, None, None)
            error = EngineClosedError(
                f"run {self._run.run_id} ended while scoped resource {name!r} was opening; "
                "it was closed again"
            )
            future.set_exception(error)
            future.exception()
            raise error
        self._stack.append((name, manager))
        self._values[name] = value
        future.set_result(value)
        return value

    @property
    def opened(self) -> list[str]:
        """Names of the resources opened so far, in order of opening."""
        return [name for name, _ in self._stack]

    @property
    def closed(self) -> bool:
        """True once the scope was closed."""
        return self._closed

    def __contains__(self, name: object) -> bool:
        return name in self._registry

    def __iter__(self) -> Iterator[str]:
        return iter(self._registry.names())

    def __len__(self) -> int:
        return len(self._registry)

    async def aclose(self, error: BaseException | None = None) -> None:
        """Close the opened resources in reverse order, passing ``error`` (the run's
        exception, None on success) to each ``__aexit__``. Never raises (whatever a close
        raises, ``SystemExit`` included, is logged and the next resource is closed), except a
        real cancellation of the task closing them."""
        self._closed = True
        exc_type = type(error) if error is not None else None
        tb = error.__traceback__ if error is not None else None
        while self._stack:
            name, manager = self._stack.pop()
            self._values.pop(name, None)
            try:
                async with asyncio.timeout(self._close_timeout):
                    await manager.__aexit__(exc_type, error, tb)
            except TimeoutError:
                _log.error(
                    "scoped resource did not close in time; abandoned",
                    resource=name,
                    run_id=self._run.run_id,
                    close_timeout=self._close_timeout,
                )
            except BaseException as exc:
                if exc is error:  # the context manager re-raised the run's own error
                    continue
                if isinstance(exc, asyncio.CancelledError) and cancelling():
                    raise
                _log.error(
                    "scoped resource failed to close",
                    resource=name,
                    run_id=self._run.run_id,
                    error=describe_error(exc),
                )

    def __repr__(self) -> str:
        return f"<RequestScope run={self._run.run_id} opened={self.opened}>"


async def _close_whatever_happens(scope: RequestScope, error: BaseException | None) -> None:
    """Close ``scope`` even if the closing task is cancelled again meanwhile (engine cleanup
    cancelling a run that is already ending): the close runs in its own task, and a further
    cancellation only means we keep waiting for it (each close is bounded by its timeout)."""
    closer = asyncio.ensure_future(scope.aclose(error))
    while True:
        try:
            await asyncio.shield(closer)
        except asyncio.CancelledError:
            if closer.done():
                return
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # the run's outcome stands; see the docstring
            continue
        return


class RequestScopeExtension:
    """Per-engine extension: a fresh ``RequestScope`` per run, closed when the run ends."""

    plugin_name: str | None = "request_scope"

    def __init__(self, registry: ResourceRegistry, close_timeout: float) -> None:
        self._registry = registry
        self._close_timeout = close_timeout
        self._live: set[RequestScope] = set()

    async def around_run(self, run: RunContext, call_next: Callable[[], Awaitable[Any]]) -> Any:
        """Give the run its scope; close whatever it opened, in any outcome."""
        scope = RequestScope(run, self._registry, self._close_timeout)
        run.scope = scope
        self._live.add(scope)
        error: BaseException | None = None
        try:
            return await call_next()
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._live.discard(scope)
            if scope._stack:
                await _close_whatever_happens(scope, error)
            else:
                scope._closed = True

    async def close(self) -> None:
        """Engine cleanup: close the scopes of runs that did not get to close their own."""
        for scope in list(self._live):
            self._live.discard(scope)
            await scope.aclose(EngineClosedError("the engine was cleaned up"))


class RequestScopePlugin:
    """The built-in ``request_scope`` plugin (see the module docs)."""

    name = "request_scope"

    def __init__(self) -> None:
        self.settings = RequestScopeSettings()

    @hookimpl
    def agentengine_configure(self, settings: Settings) -> None:
        """Read the ``[request_scope]`` table."""
        self.settings = settings.model("request_scope", RequestScopeSettings)

    @hookimpl
    def agentengine_engine_extensions(
        self, context: UserExecutionContext, engine: UserExecutionEngine
    ) -> RequestScopeExtension | None:
        """An extension for engines whose factory has declared resources (none otherwise:
        no resource, no per-run cost)."""
        registry = engine.resources
        if not len(registry):
            return None
        return RequestScopeExtension(registry, self.settings.close_timeout)
