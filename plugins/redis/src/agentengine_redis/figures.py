"""The run queue's figures for operators (``GET /metrics``, ``agentengine plugins``), and the
workers' heartbeat they count.

* ``queue_depth``: wake-ups on the work stream no worker has taken yet;
* ``runs_queued``: runs waiting for a slot under ``max_concurrent_per_user`` (all users);
* ``runs_running``: runs holding a slot whose worker's lease is alive;
* ``workers_alive``: workers whose heartbeat is alive (``<prefix>workers``, a sorted set of
  worker names scored by the expiry of their lease, Redis ``TIME``; each worker writes itself
  there every ``lease / 3`` seconds and removes itself when it stops taking runs);
* ``runs_lost_total``: runs ended because their worker was lost (``<prefix>queue:lost``, a
  counter; 0 while absent).

Counting waiting and running runs needs every user's keys: the API instances add each user
they queue a run for to ``<prefix>queue:users`` (a sorted set, scored by the time of that
user's last submission), and counting drops a user from it once nothing of theirs waits or
holds a slot. So a count costs one pipelined round trip per 1,000 users with runs in flight
or waiting, not a scan of the keyspace. No figure is per user: user ids never become labels.
"""

from __future__ import annotations

from typing import Any

from agentengine_redis.layout import (
    lost_key,
    queue_users_key,
    slots_key,
    wait_key,
    work_key,
    workers_key,
)
from agentengine_redis.scripts import Script

__all__ = ["FIGURES", "HEARTBEAT", "describe", "leave", "queue_figures"]

#: The figures, in the order they are described.
FIGURES = ("queue_depth", "runs_queued", "runs_running", "workers_alive", "runs_lost_total")

#: Users counted per pipelined round trip.
_CHUNK = 1_000

# A worker's heartbeat. KEYS: the workers' sorted set. ARGV: worker name, lease (ms), how long
# (ms) a worker silent past its lease is remembered. Scored by the lease's expiry on Redis's
# clock, as the slots are: "alive" means the same thing for both.
HEARTBEAT = Script(
    """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) + tonumber(ARGV[3]))
return now
"""
)

# Forget a user with nothing waiting and no slot held, unless they submitted again since the
# count read their score. KEYS: the users' sorted set, the user's wait list, their slots.
# ARGV: the user, the score read.
_FORGET = Script(
    """
if redis.call('ZSCORE', KEYS[1], ARGV[1]) == ARGV[2]
    and redis.call('LLEN', KEYS[2]) == 0 and redis.call('ZCARD', KEYS[3]) == 0 then
  return redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0
"""
)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _eval(redis: Any, script: Script, keys: list[str], args: list[Any]) -> Any:
    from redis.exceptions import NoScriptError

    try:
        return await redis.evalsha(script.sha, len(keys), *keys, *args)
    except NoScriptError:
        return await redis.eval(script.source, len(keys), *keys, *args)


async def heartbeat(redis: Any, prefix: str, worker: str, lease: float) -> None:
    """Mark ``worker`` alive for ``lease`` seconds (remembered an hour past that)."""
    await _eval(redis, HEARTBEAT, [workers_key(prefix)], [worker, int(lease * 1000), 3_600_000])


async def leave(redis: Any, prefix: str, worker: str) -> None:
    """``worker`` stopped taking runs: no longer counted alive."""
    await redis.zrem(workers_key(prefix), worker)


async def queue_figures(redis: Any, prefix: str, group: str) -> dict[str, float]:
    """The figures (``FIGURES``) of the queue under ``prefix`` read by consumer ``group``.
    Raises what redis-py raises when Redis is unreachable."""
    seconds, micros = await redis.time()
    now = int(seconds) * 1000 + int(micros) // 1000
    pipe = redis.pipeline(transaction=False)
    pipe.xlen(work_key(prefix))
    pipe.zcount(workers_key(prefix), f"({now}", "+inf")
    pipe.get(lost_key(prefix))
    pipe.zrange(queue_users_key(prefix), 0, -1, withscores=True, score_cast_func=_text)
    length, alive, lost, users = await pipe.execute()
    taken = 0
    try:
        for info in await redis.xinfo_groups(work_key(prefix)):
            if _text(info.get("name")) == group:
                taken = int(info.get("pending") or 0)
    except Exception as exc:  # no stream yet: nothing queued, nothing taken
        if "no such key" not in str(exc).lower():
            raise
    queued = running = 0
    for start in range(0, len(users), _CHUNK):
        chunk = users[start : start + _CHUNK]
        pipe = redis.pipeline(transaction=False)
        for user, _score in chunk:
            pipe.llen(wait_key(prefix, _text(user)))
            pipe.zcount(slots_key(prefix, _text(user)), f"({now}", "+inf")
            pipe.zcard(slots_key(prefix, _text(user)))
        counts = await pipe.execute()
        for i, (user, score) in enumerate(chunk):
            waiting, holding, slots = counts[3 * i : 3 * i + 3]
            queued += int(waiting)
            running += int(holding)
            if not waiting and not slots:
                name = _text(user)
                keys = [queue_users_key(prefix), wait_key(prefix, name), slots_key(prefix, name)]
                await _eval(redis, _FORGET, keys, [name, score])
    return {
        "queue_depth": max(0, int(length) - taken),
        "runs_queued": queued,
        "runs_running": running,
        "workers_alive": int(alive),
        "runs_lost_total": int(lost or 0),
    }


def describe(figures: dict[str, float]) -> str:
    """The figures in words, for ``agentengine plugins``."""
    return (
        f"queue depth {figures['queue_depth']:g}, runs queued {figures['runs_queued']:g}, "
        f"running {figures['runs_running']:g}, workers alive {figures['workers_alive']:g}, "
        f"runs lost {figures['runs_lost_total']:g}"
    )
