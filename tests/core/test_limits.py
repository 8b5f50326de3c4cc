"""The concurrency limiter: per-user and global caps, fairness, cancellation while waiting."""

from __future__ import annotations

import asyncio

import pytest
from agentengine.runtime.limits import ConcurrencyLimiter


async def hold(limiter: ConcurrencyLimiter, user: str, log: list[str], gate: asyncio.Event) -> None:
    await limiter.acquire(user)
    log.append(user)
    try:
        await gate.wait()
    finally:
        limiter.release(user)


async def test_per_user_cap_does_not_block_other_users() -> None:
    limiter = ConcurrencyLimiter(per_user=2, global_limit=10)
    gate = asyncio.Event()
    log: list[str] = []
    tasks = [asyncio.create_task(hold(limiter, "alice", log, gate)) for _ in range(4)]
    tasks.append(asyncio.create_task(hold(limiter, "bob", log, gate)))
    await asyncio.sleep(0.01)
    assert log.count("alice") == 2 and log.count("bob") == 1
    assert limiter.running("alice") == 2 and limiter.running() == 3
    gate.set()
    await asyncio.gather(*tasks)
    assert log.count("alice") == 4
    assert limiter.running() == 0 and limiter.active_users() == 0


async def test_global_cap_and_arrival_order() -> None:
    limiter = ConcurrencyLimiter(per_user=5, global_limit=2)
    gates = [asyncio.Event() for _ in range(5)]
    log: list[str] = []
    tasks = [asyncio.create_task(hold(limiter, f"u{i}", log, gates[i])) for i in range(5)]
    await asyncio.sleep(0.01)
    assert log == ["u0", "u1"]
    gates[0].set()
    await asyncio.sleep(0.01)
    assert log == ["u0", "u1", "u2"]  # the first waiter got the freed slot
    for gate in gates:
        gate.set()
    await asyncio.gather(*tasks)
    assert log == ["u0", "u1", "u2", "u3", "u4"]
    assert limiter.running() == 0


async def test_a_user_at_its_cap_waiting_globally_does_not_hold_up_others() -> None:
    limiter = ConcurrencyLimiter(per_user=1, global_limit=2)
    gate_a, gate_b, gate_c = asyncio.Event(), asyncio.Event(), asyncio.Event()
    log: list[str] = []
    a1 = asyncio.create_task(hold(limiter, "a", log, gate_a))
    b1 = asyncio.create_task(hold(limiter, "b", log, gate_b))
    await asyncio.sleep(0.01)
    a2 = asyncio.create_task(hold(limiter, "a", log, gate_a))  # waits for a's own slot
    c1 = asyncio.create_task(hold(limiter, "c", log, gate_c))  # waits for a global slot
    await asyncio.sleep(0.01)
    gate_b.set()  # a global slot frees: c gets it, a2 still waits for a's slot
    await asyncio.sleep(0.01)
    assert log == ["a", "b", "c"]
    gate_a.set()
    gate_c.set()
    await asyncio.gather(a1, a2, b1, c1)
    assert log == ["a", "b", "c", "a"]


async def test_cancelled_waiters_leave_no_trace() -> None:
    limiter = ConcurrencyLimiter(per_user=1, global_limit=1)
    gate = asyncio.Event()
    log: list[str] = []
    first = asyncio.create_task(hold(limiter, "a", log, gate))
    await asyncio.sleep(0.01)
    waiters = [asyncio.create_task(limiter.acquire(u)) for u in ("a", "b", "c")]
    await asyncio.sleep(0.01)
    for w in waiters:
        w.cancel()
    for w in waiters:
        with pytest.raises(asyncio.CancelledError):
            await w
    gate.set()
    await first
    assert limiter.running() == 0 and limiter.active_users() == 0
    await limiter.acquire("b")  # nothing was left holding a slot
    limiter.release("b")


async def test_grant_racing_a_cancellation_is_given_back() -> None:
    limiter = ConcurrencyLimiter(per_user=1, global_limit=1)
    await limiter.acquire("a")
    waiter = asyncio.create_task(limiter.acquire("b"))
    await asyncio.sleep(0)
    limiter.release("a")  # grants b's future...
    waiter.cancel()  # ...and b is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert limiter.running() == 0


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ConcurrencyLimiter(0, 1)
