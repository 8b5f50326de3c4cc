"""``drain_on_signal``: a shutdown signal drains the factory's runs before the server's own
handler hears of it; ``DrainingError`` while draining; ``DrainingErrorMiddleware`` answers it
503 with ``Retry-After``. Real factories, real runs, real signals sent to this process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import Iterator
from types import FrameType
from typing import Any

import pytest
from agentengine import (
    BackendUnavailableError,
    DrainingError,
    DrainingErrorMiddleware,
    EngineClosedError,
    ExecutionEngineFactory,
    RunContext,
    RunStatus,
    UserExecutionContext,
    agent,
    drain_on_signal,
    hookimpl,
)


@agent(name="nap")
async def nap(run: RunContext, seconds: float) -> str:
    await run.think(f"napping {seconds}s")
    await asyncio.sleep(seconds)
    return "rested"


class _Agents:
    name = "drain-tests"

    @hookimpl
    def agentengine_register_agents(self, registry: Any) -> None:
        registry.add(nap)


def _factory(drain_timeout: float = 1.0) -> ExecutionEngineFactory:
    return ExecutionEngineFactory(
        plugins=[_Agents()], load_entrypoints=False, drain_timeout=drain_timeout, idle_ttl=None
    )


class _ServerHandler:
    """Stands for the server's signal handler: records each call and what the runs were
    doing at that moment."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.runs_active_then: list[int] = []
        self.called = asyncio.Event()
        self.factory: ExecutionEngineFactory | None = None

    def __call__(self, sig: int, frame: FrameType | None) -> None:
        self.calls.append(sig)
        if self.factory is not None:
            self.runs_active_then.append(self.factory.get_factory_metrics()["runs_active"])
        self.called.set()


@contextlib.contextmanager
def _server_handlers(handler: _ServerHandler) -> Iterator[None]:
    """Install ``handler`` for SIGINT/SIGTERM as a server would; restore the test's own."""
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


async def _start(factory: ExecutionEngineFactory, user: str, seconds: float) -> Any:
    engine = await factory.create_for_user(UserExecutionContext.for_user(user))
    return await engine.start_run("nap", {"seconds": seconds})


async def _until_thinking(factory: ExecutionEngineFactory, handles: list[Any]) -> None:
    async with asyncio.timeout(30):
        while factory.get_factory_metrics()["runs_active"] < len(handles):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)


async def test_a_signal_drains_runs_before_the_servers_handler_hears_of_it() -> None:
    server = _ServerHandler()
    factory = server.factory = _factory(drain_timeout=1.0)
    with _server_handlers(server):
        async with drain_on_signal(factory) as drain:
            short = await _start(factory, "alice", 0.05)
            endless = await _start(factory, "bob", 3600)
            await _until_thinking(factory, [short, endless])
            signal.raise_signal(signal.SIGTERM)
            async with asyncio.timeout(30):
                while not factory.draining:  # noqa: ASYNC110 - a flag, no event
                    await asyncio.sleep(0)
            assert drain.draining
            # Draining: no new runs, with a hint for Retry-After.
            with pytest.raises(DrainingError) as refused:
                await _start(factory, "carol", 0.01)
            assert refused.value.retry_after >= 1
            assert isinstance(refused.value, EngineClosedError)
            assert factory.draining
            assert server.calls == []  # held back while runs drain
            async with asyncio.timeout(30):
                await server.called.wait()
            # The server heard of the signal only once every run had ended.
            assert server.calls == [signal.SIGTERM]
            assert server.runs_active_then == [0]
            assert (await short.result()).status is RunStatus.SUCCEEDED
            assert (await endless.result()).status is RunStatus.CANCELLED
            assert drain.drained and factory.closed and not factory.draining
            with pytest.raises(EngineClosedError) as closed:
                await _start(factory, "carol", 0.01)
            assert not isinstance(closed.value, DrainingError)
            # Once drained, a signal goes straight to the server.
            signal.raise_signal(signal.SIGINT)
            assert server.calls == [signal.SIGTERM, signal.SIGINT]
        # Leaving puts the server's handler back.
        assert signal.getsignal(signal.SIGTERM) is server
        assert signal.getsignal(signal.SIGINT) is server


async def test_a_second_signal_while_draining_goes_to_the_server_at_once() -> None:
    server = _ServerHandler()
    factory = _factory(drain_timeout=0.5)
    with _server_handlers(server):
        async with drain_on_signal(factory) as drain:
            endless = await _start(factory, "alice", 3600)
            await _until_thinking(factory, [endless])
            signal.raise_signal(signal.SIGINT)
            assert server.calls == []
            signal.raise_signal(signal.SIGINT)
            # Both, in order: the server does what it does on a repeated signal.
            assert server.calls == [signal.SIGINT, signal.SIGINT]
            assert not drain.drained
            await drain.wait()
            assert (await endless.result()).status is RunStatus.CANCELLED


async def test_the_drain_waits_for_tracked_streams_to_send_their_last_events() -> None:
    factory = _factory(drain_timeout=5.0)
    sent: list[str] = []
    stream_ended = asyncio.Event()
    async with drain_on_signal(factory, signals=()) as drain:

        async def slow_client() -> None:
            async with contextlib.aclosing(drain.subscribe("alice")) as items:
                async for item in items:
                    await asyncio.sleep(0.02)  # a slow send
                    sent.append(item.type)
            stream_ended.set()

        reader = asyncio.create_task(slow_client())
        await asyncio.sleep(0.05)
        handles = [await _start(factory, "alice", 0.05) for _ in range(3)]
        await _until_thinking(factory, handles)
        await drain.run()
        # When the drain lets the server go, the client was sent every run's last event.
        assert stream_ended.is_set()
        assert sent.count("agent_completed") == 3
        assert drain.streams == 0
        await reader


async def test_leaving_without_a_signal_still_drains() -> None:
    factory = _factory(drain_timeout=5.0)
    async with drain_on_signal(factory, signals=()):
        handle = await _start(factory, "alice", 0.05)
    assert factory.closed
    assert (await handle.result()).status is RunStatus.SUCCEEDED


async def test_a_drain_that_fails_still_lets_the_server_go() -> None:
    server = _ServerHandler()
    factory = _factory()

    async def broken() -> None:
        raise RuntimeError("boom")

    with _server_handlers(server):
        async with drain_on_signal(factory, on_drain=broken) as drain:
            signal.raise_signal(signal.SIGTERM)
            async with asyncio.timeout(30):
                await server.called.wait()
            assert drain.drained and server.calls == [signal.SIGTERM]
    await factory.shutdown()


# -- DrainingErrorMiddleware -------------------------------------------------------------------


async def _call(app: Any, kind: str) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    await DrainingErrorMiddleware(app)({"type": kind, "path": "/"}, receive, send)
    return sent


async def test_the_middleware_answers_draining_with_503_and_retry_after() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise DrainingError("draining", retry_after=7)

    start, body = await _call(app, "http")
    assert start["status"] == 503
    headers = dict(start["headers"])
    assert headers[b"retry-after"] == b"7"
    assert json.loads(body["body"]) == {
        "error": "shutting_down",
        "message": "the server is shutting down and takes no new runs; retry later",
        "retry_after": 7,
    }
    assert await _call(app, "websocket") == [{"type": "websocket.close", "code": 1013}]

    async def closed(scope: Any, receive: Any, send: Any) -> None:
        raise EngineClosedError("closed")

    start, _ = await _call(closed, "http")
    assert start["status"] == 503 and dict(start["headers"])[b"retry-after"] == b"1"


async def test_the_middleware_answers_an_unreachable_backend_with_503_naming_it() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise BackendUnavailableError("Redis is away; retry", dependency="redis", retry_after=2)

    start, body = await _call(app, "http")
    assert start["status"] == 503 and dict(start["headers"])[b"retry-after"] == b"2"
    assert json.loads(body["body"]) == {
        "error": "unavailable",
        "dependency": "redis",
        "message": "Redis is away; retry",
        "retry_after": 2,
    }
    assert await _call(app, "websocket") == [{"type": "websocket.close", "code": 1013}]


async def test_the_middleware_leaves_other_errors_and_started_responses_alone() -> None:
    async def other(scope: Any, receive: Any, send: Any) -> None:
        raise ValueError("not ours")

    with pytest.raises(ValueError, match="not ours"):
        await _call(other, "http")

    async def late(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise DrainingError("draining")

    with pytest.raises(DrainingError):
        await _call(late, "http")

    async def fine(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    assert [m["type"] for m in await _call(fine, "http")] == [
        "http.response.start",
        "http.response.body",
    ]


def test_draining_error_retry_after_is_a_whole_number_of_seconds_at_least_1() -> None:
    assert DrainingError("x", retry_after=0).retry_after == 1
    assert DrainingError("x", retry_after=-3).retry_after == 1
    assert DrainingError("x").retry_after == 1


async def test_when_draining_callbacks_run_as_the_drain_begins() -> None:
    factory = _factory()
    seen: list[str] = []
    drain = drain_on_signal(factory, signals=())

    def broken() -> None:
        raise RuntimeError("boom")

    drain.when_draining(lambda: seen.append(f"first, draining={factory.draining}"))
    drain.when_draining(broken)  # logged; the others still run and the drain goes on
    drain.when_draining(lambda: seen.append("second"))
    async with drain:
        drain.start()
        assert seen == ["first, draining=False", "second"]  # before the drain's first step
        drain.when_draining(lambda: seen.append("late"))  # began already: called at once
        assert seen[-1] == "late"
    assert drain.drained and factory.closed


async def test_drain_subscribe_starts_where_it_is_called_like_the_sinks() -> None:
    """``drain.subscribe(user, LIVE)`` fixes its start when called, as ``factory.events.
    subscribe`` does: a handler that subscribes before accepting a WebSocket misses nothing
    published between the call and its first read; a bad cursor is refused at the call."""
    from agentengine import LIVE

    async with _factory() as factory, drain_on_signal(factory) as drain:
        ctx = UserExecutionContext.for_user("alice")
        async with factory.user_execution_engine(ctx) as engine:
            await engine.execute_agent("nap", {"seconds": 0})  # retained, before the call
            items = drain.subscribe("alice", LIVE)
            later = await engine.execute_agent("nap", {"seconds": 0})  # before the first read
        with pytest.raises(ValueError, match="invalid cursor"):
            drain.subscribe("alice", "not-a-cursor")
        async with contextlib.aclosing(items):
            received = [await anext(items) for _ in later.events]
    assert [(e.run_id, e.seq) for e in received] == [(e.run_id, e.seq) for e in later.events]
