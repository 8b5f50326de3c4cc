"""``direct_send``: a WebSocket send run by hand in the caller's task, finished by a task only
when it has to wait. These tests pin what it relies on: asyncio's coroutine protocol, and
uvicorn's WebSocket send (the implementation ``uvicorn_config`` picks) ending without waiting
while the client reads, and waiting on a future while it does not."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import uvicorn
from agentengine import ExecutionEngineFactory
from agentengine_server import create_app, uvicorn_config
from agentengine_server.direct_send import finish_coroutine, send_eagerly
from server_helpers import SECRET
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from websockets.asyncio.client import connect

# -- asyncio's coroutine protocol ------------------------------------------------------------


async def test_a_coroutine_yields_the_future_it_waits_on_or_none_for_a_bare_yield() -> None:
    """What ``finish_coroutine`` handles, as ``asyncio.Task`` does: the future itself (marked
    ``_asyncio_future_blocking``), also through ``asyncio.Event.wait``; None for
    ``asyncio.sleep(0)``; ``StopIteration`` when the coroutine never had to wait."""
    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    coro = _await(fut)
    assert coro.send(None) is fut
    assert fut._asyncio_future_blocking is True
    coro.close()

    event = asyncio.Event()
    coro = event.wait()
    waiting = coro.send(None)
    assert asyncio.isfuture(waiting)
    coro.close()

    event.set()
    with pytest.raises(StopIteration):
        event.wait().send(None)

    coro = asyncio.sleep(0)
    assert coro.send(None) is None
    with pytest.raises(StopIteration):
        coro.send(None)


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


async def _waiting_forever(closed: list[bool]) -> None:
    """Waits on a future nobody completes; notes in ``closed`` when it is closed."""
    try:
        await asyncio.get_running_loop().create_future()
    finally:
        closed.append(True)


async def test_finish_coroutine_resumes_like_a_task() -> None:
    log: list[str] = []
    fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def work() -> None:
        log.append("start")
        log.append(await fut)
        await asyncio.sleep(0)
        log.append("end")

    coro = work()
    waiting = coro.send(None)  # runs until it waits on fut
    assert waiting is fut
    assert log == ["start"]
    driver = asyncio.create_task(finish_coroutine(coro, waiting))
    await asyncio.sleep(0)
    fut.set_result("value")
    await driver
    assert log == ["start", "value", "end"]


async def test_finish_coroutine_propagates_errors_and_closes_on_cancel() -> None:
    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    closed: list[bool] = []

    async def failing() -> None:
        await fut
        raise OSError("client gone")

    coro = failing()
    driver = asyncio.create_task(finish_coroutine(coro, coro.send(None)))
    fut.set_result(None)
    with pytest.raises(OSError, match="client gone"):
        await driver

    coro2 = _waiting_forever(closed)
    driver = asyncio.create_task(finish_coroutine(coro2, coro2.send(None)))
    await asyncio.sleep(0)
    driver.cancel()
    with pytest.raises(asyncio.CancelledError):
        await driver
    assert closed == [True]


# -- send_eagerly ------------------------------------------------------------------------------


class Calls:
    """What ``send_eagerly`` reported, in order."""

    def __init__(self) -> None:
        self.log: list[Any] = []

    def send(self, coro: Any) -> asyncio.Task[None] | None:
        return send_eagerly(
            coro,
            sent=lambda: self.log.append("sent"),
            failed=lambda exc: self.log.append(("failed", exc)),
            settled=lambda: self.log.append("settled"),
        )


async def test_a_send_that_never_waits_is_done_before_send_eagerly_returns() -> None:
    calls = Calls()
    ran: list[str] = []

    async def send() -> None:
        ran.append("sent")

    assert calls.send(send()) is None
    assert ran == ["sent"]
    assert calls.log == ["sent"]


async def test_a_send_failing_at_once_reports_the_failure_and_starts_no_task() -> None:
    calls = Calls()
    error = OSError("broken pipe")

    async def send() -> None:
        raise error

    assert calls.send(send()) is None
    assert calls.log == [("failed", error)]


async def test_a_send_that_waits_is_finished_by_a_task_in_order() -> None:
    calls = Calls()
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    written: list[str] = []

    async def send(text: str) -> None:
        await gate
        await asyncio.sleep(0)  # a bare yield as well
        written.append(text)

    task = calls.send(send("first"))
    assert task is not None
    assert calls.log == []  # waiting: nothing reported yet
    gate.set_result(None)
    await task
    assert written == ["first"]
    assert calls.log == ["sent", "settled"]


async def test_a_send_failing_after_waiting_reports_it_and_the_task_raises() -> None:
    calls = Calls()
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    error = ConnectionResetError("client gone")

    async def send() -> None:
        await gate
        raise error

    task = calls.send(send())
    assert task is not None
    gate.set_result(None)
    with pytest.raises(ConnectionResetError):
        await task
    assert calls.log == [("failed", error), "settled"]


async def test_cancelling_a_waiting_send_closes_it_without_reporting_a_failure() -> None:
    calls = Calls()
    closed: list[bool] = []
    task = calls.send(_waiting_forever(closed))
    assert task is not None
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert closed == [True]
    assert calls.log == ["settled"]


# -- against uvicorn's WebSocket send, as the server configures it ------------------------------


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Any:  # the test's process keeps its own signal handlers
        yield


@contextlib.asynccontextmanager
async def serving(endpoint: Callable[[WebSocket], Awaitable[None]]) -> AsyncIterator[str]:
    """The server's app, with ``endpoint`` at ``/probe``, under uvicorn configured by
    ``uvicorn_config``, in this event loop; yields the probe's URL."""
    factory = ExecutionEngineFactory(load_entrypoints=False)
    app = create_app(factory, secret=SECRET)
    app.router.routes.append(WebSocketRoute("/probe", endpoint))
    server = _Server(uvicorn_config(app, port=0))
    serve = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(30):
            while not server.started:
                assert not serve.done(), "the server did not start"
                await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}/probe"
    finally:
        server.should_exit = True
        async with asyncio.timeout(30):
            await serve


async def test_uvicorn_sends_to_a_reading_client_without_waiting() -> None:
    """The case ``direct_send`` exists for: while the client reads, a send ends in the first
    step (no task, no task switch)."""
    ended_at_once: list[bool] = []

    async def endpoint(ws: WebSocket) -> None:
        await ws.accept()
        for n in range(20):
            coro = ws.send_text(f"frame {n}")
            try:
                coro.send(None)
            except StopIteration:
                ended_at_once.append(True)
            else:  # pragma: no cover - what the test is there to catch
                ended_at_once.append(False)
                await finish_coroutine(coro, None)
        await ws.send_text("end")

    async with serving(endpoint) as url, connect(url) as client:
        got = []
        async with asyncio.timeout(30):
            while (message := await client.recv()) != "end":
                got.append(message)
    assert got == [f"frame {n}" for n in range(20)]
    assert ended_at_once == [True] * 20


#: Frames sent to a client that does not read until one of them has to wait (bounds the test:
#: the client's queue, the socket buffers and the transport's buffer fill up well before).
MAX_FRAMES = 400
FRAME_CHARS = 256 * 1024


async def _send_until_one_waits(
    ws: WebSocket, calls: Calls, waiting: asyncio.Event, extra: int
) -> tuple[asyncio.Task[None] | None, int]:
    """Send numbered frames as the fan-out does (each one only once the one before it went
    out) until one has to wait, then ``extra`` more; returns the last send's task and how many
    frames were sent."""
    payload = secrets.token_urlsafe(FRAME_CHARS)[:FRAME_CHARS]
    inflight: asyncio.Task[None] | None = None
    waited_at: int | None = None
    n = 0
    while n < MAX_FRAMES and (waited_at is None or n < waited_at + 1 + extra):
        if inflight is not None:
            with contextlib.suppress(Exception):
                await inflight
            inflight = None
        calls.log.append(("send", n))
        inflight = calls.send(ws.send_text(f"{n:06d}{payload}"))
        if inflight is not None and waited_at is None:
            waited_at = n
            waiting.set()
        n += 1
    assert waited_at is not None, f"no send waited in {MAX_FRAMES} frames to a client not reading"
    return inflight, n


async def test_a_send_to_a_client_not_reading_waits_and_is_finished_in_order() -> None:
    calls = Calls()
    waiting = asyncio.Event()
    sent_count: list[int] = []

    async def endpoint(ws: WebSocket) -> None:
        await ws.accept()
        inflight, count = await _send_until_one_waits(ws, calls, waiting, extra=3)
        if inflight is not None:
            await inflight
        sent_count.append(count)
        await ws.send_text("end")

    async with (
        serving(endpoint) as url,
        connect(url, compression=None, max_queue=1, max_size=2 * FRAME_CHARS) as client,
    ):
        async with asyncio.timeout(60):
            await waiting.wait()  # only now does the client read
            got = []
            while (message := await client.recv()) != "end":
                got.append(int(message[:6]))
    assert got == list(range(sent_count[0]))
    # Each frame reported sent once, in order, before the next was sent; one (at least) was
    # finished by a task ("settled").
    sends = [entry for entry in calls.log if entry not in ("settled",)]
    assert sends == [x for n in range(sent_count[0]) for x in (("send", n), "sent")]
    assert "settled" in calls.log
    assert not [entry for entry in calls.log if isinstance(entry, tuple) and entry[0] == "failed"]


async def test_a_waiting_send_to_a_client_that_left_reports_a_failure() -> None:
    calls = Calls()
    waiting = asyncio.Event()
    outcome: list[BaseException | None] = []
    client_gone = asyncio.Event()
    ended = asyncio.Event()

    async def endpoint(ws: WebSocket) -> None:
        await ws.accept()
        inflight, _ = await _send_until_one_waits(ws, calls, waiting, extra=0)
        assert inflight is not None
        await client_gone.wait()
        try:
            await inflight
        except Exception as exc:
            outcome.append(exc)
        else:  # pragma: no cover - what the test is there to catch
            outcome.append(None)
        ended.set()

    async with serving(endpoint) as url:
        client = await connect(url, compression=None, max_queue=1, max_size=2 * FRAME_CHARS)
        async with asyncio.timeout(60):
            await waiting.wait()
            client.transport.abort()  # gone without a close frame, mid-send
            client_gone.set()
            await ended.wait()
    failures = [entry for entry in calls.log if isinstance(entry, tuple) and entry[0] == "failed"]
    assert len(failures) == 1
    assert outcome == [failures[0][1]]
    assert calls.log[-2:] == [failures[0], "settled"]
