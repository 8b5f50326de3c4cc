"""Sending a WebSocket frame at once from the caller's task, with no task per frame.

Why it exists: all of a user's connections that keep up share one reader of the user's events
(``streaming.UserFanout``), which hands each frame to each connection. Awaiting each send in
that reader would let one slow client hold up the others; a task per frame and connection
costs a task switch per frame, which took the WebSocket fan-out down to about 0.3x of a bare
Starlette endpoint's rate (docs/performance.md; above 0.7x with this). So ``send_eagerly``
runs the send coroutine by hand, in the reader's task, until it first has to wait: with
uvicorn that is only when the client is not reading (the transport paused writing). Only
then does a task (``finish_coroutine``) take the coroutine over and finish it, while the
connection queues later frames in its bounded buffer. Python 3.12's eager tasks
(``eager_start``) would do the same; Python 3.11, which the project supports, has none.

What it relies on, each checked by tests/server/test_server_direct_send.py:

* asyncio's coroutine protocol, as ``asyncio.Task`` drives it: ``coro.send(None)`` runs the
  coroutine to its first suspension and returns what it waits on, an asyncio future (with
  ``_asyncio_future_blocking`` set, which ``finish_coroutine`` clears as a task's step does)
  or None for a bare yield (``asyncio.sleep(0)``); ``StopIteration`` when it ended without
  waiting. ``finish_coroutine`` waits for that future and resumes the coroutine, as the task's
  step would, until it ends;
* the send not depending on the task it runs in: the first part runs in the caller's task,
  so it must not use ``asyncio.current_task()`` (``asyncio.timeout``, cancellation scopes).
  Starlette's ``WebSocket.send_text`` and uvicorn's WebSocket ``send`` do not;
* uvicorn's ``websockets-sansio`` WebSocket implementation (the one ``uvicorn_config``
  chooses), whose ``send`` writes the frame to the transport synchronously and awaits only
  ``writable.wait()``, an ``asyncio.Event`` cleared while the transport is paused. So a send
  to a client that keeps reading ends without waiting and costs no task at all. Were that to
  change (a lock, or an ``await`` before writing), every send would take the fallback path:
  still correct, but as slow as a task per frame; a test fails then.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["finish_coroutine", "send_eagerly"]


def send_eagerly(
    coro: Coroutine[Any, Any, Any],
    *,
    sent: Callable[[], None],
    failed: Callable[[BaseException], None],
    settled: Callable[[], None],
) -> asyncio.Task[None] | None:
    """Run the send ``coro`` now, in the caller's task, until it ends or first has to wait.

    Ended: ``sent()`` (or ``failed(exc)`` when it raised) is called before this returns, and
    it returns None. Waiting: it returns the task that finishes the send; that task calls
    ``sent()`` or ``failed(exc)`` (not for a cancellation; cancelling it closes ``coro``), and
    then ``settled()``, and re-raises what the send raised. The caller queues later frames
    until then, so frames go out in order.
    """
    try:
        waiting = coro.send(None)
    except StopIteration:
        sent()
        return None
    except Exception as exc:
        failed(exc)
        return None
    return asyncio.get_running_loop().create_task(
        _finish(coro, waiting, sent, failed, settled), name="agentengine-server-send"
    )


async def _finish(
    coro: Coroutine[Any, Any, Any],
    waiting: Any,
    sent: Callable[[], None],
    failed: Callable[[BaseException], None],
    settled: Callable[[], None],
) -> None:
    try:
        await finish_coroutine(coro, waiting)
    except BaseException as exc:
        if not isinstance(exc, asyncio.CancelledError):
            failed(exc)
        raise
    else:
        sent()
    finally:
        settled()


async def finish_coroutine(coro: Coroutine[Any, Any, Any], waiting: Any) -> None:
    """Drive to its end a coroutine that was started by hand (``coro.send(None)``) and
    suspended on ``waiting``, the way an asyncio task would: wait for what it waits on, resume
    it, repeat. Cancelling this closes the coroutine."""
    try:
        while True:
            if waiting is None:  # a bare yield (asyncio.sleep(0)): just let the loop run
                await asyncio.sleep(0)
            elif asyncio.isfuture(waiting):
                # What a task's step does with a future the coroutine yielded.
                waiting._asyncio_future_blocking = False
                await asyncio.wait((waiting,))
            else:
                raise RuntimeError(f"cannot wait on {waiting!r} outside a task")
            try:
                waiting = coro.send(None)
            except StopIteration:
                return
    except BaseException:
        coro.close()
        raise
