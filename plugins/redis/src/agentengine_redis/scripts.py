"""The Lua scripts: each runs atomically on one user's two keys (see ``layout``)."""

from __future__ import annotations

import hashlib

__all__ = ["ACQUIRE", "APPEND", "OPEN", "RELEASE", "RENEW", "STORE_RUN", "SUBMIT", "Script"]


class Script:
    """A script's source and SHA1 (sent with ``EVALSHA``; loaded on ``NOSCRIPT``)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()


# Append a batch of one user's items. KEYS: stream, meta. ARGV: publisher id, batch number,
# epoch to use if the log is new, retention (events), expiry (ms), then 3 values per item:
# lost, payload, attempt. An item with lost = k > 0 stands for k events dropped before they
# were stored: it takes numbers n+1..n+k and is written as one marker entry at n+k, so that
# readers learn of the loss at once. Returns {epoch, first number, 1 if already applied}.
#
# Idempotent: a publisher retries a batch with the same number after a failure whose outcome
# it does not know, and the script answers a batch it already applied with its first number
# again, appending nothing. Fencing by run attempt (a stale attempt refused) belongs here:
# every event entry carries its attempt (field "a").
APPEND = Script(
    """
local stream, meta = KEYS[1], KEYS[2]
local epoch = redis.call('HGET', meta, 'epoch')
if not epoch then
  redis.call('DEL', stream)
  epoch = ARGV[3]
  redis.call('HSET', meta, 'epoch', epoch, 'last', 0)
end
local pkey = 'p:' .. ARGV[1]
local done = redis.call('HGET', meta, pkey)
if done then
  local batch, first = string.match(done, '^(%d+):(%d+)$')
  if batch == ARGV[2] then
    return {epoch, tonumber(first), 1}
  end
end
local last = tonumber(redis.call('HGET', meta, 'last'))
local first = last + 1
for i = 6, #ARGV, 3 do
  local lost = tonumber(ARGV[i])
  if lost > 0 then
    last = last + lost
    redis.call('XADD', stream, last .. '-0', 'l', lost)
  else
    last = last + 1
    redis.call('XADD', stream, last .. '-0', 'e', ARGV[i + 1], 'a', ARGV[i + 2])
  end
end
redis.call('HSET', meta, 'last', last, pkey, ARGV[2] .. ':' .. first)
redis.call('XTRIM', stream, 'MAXLEN', ARGV[4])
redis.call('PEXPIRE', stream, ARGV[5])
redis.call('PEXPIRE', meta, ARGV[5])
return {epoch, first, 0}
"""
)

# Open (or create) a user's log for reading. KEYS: stream, meta. ARGV: epoch to use if the log
# is new, expiry (ms). Returns {epoch, last number}.
OPEN = Script(
    """
local stream, meta = KEYS[1], KEYS[2]
local epoch = redis.call('HGET', meta, 'epoch')
if not epoch then
  redis.call('DEL', stream)
  redis.call('HSET', meta, 'epoch', ARGV[1], 'last', 0)
  redis.call('PEXPIRE', meta, ARGV[2])
  return {ARGV[1], 0}
end
return {epoch, tonumber(redis.call('HGET', meta, 'last'))}
"""
)

# Store one run record. KEYS: the record's hash, the user's runs index, the user's finished
# index. ARGV: run id, record JSON, created at, finished at ('' while in flight), records kept
# finished per user, expiry (ms), the prefix of record keys, the record's stage (0 queued,
# 1 running, 2 ended). A record never goes back a stage and an ended one is never overwritten
# (its first end is its end): writes of one run from several connections or processes may
# arrive in any order. Beyond the bound the oldest finished records are dropped. Returns 1 if
# stored, 0 if refused.
STORE_RUN = Script(
    """
local rec, runs, done = KEYS[1], KEYS[2], KEYS[3]
local stage = tonumber(ARGV[8])
local stored = tonumber(redis.call('HGET', rec, 'k') or '-1')
if stored == 2 or stage < stored then
  return 0
end
local finished = ARGV[4] ~= ''
redis.call('HSET', rec, 'r', ARGV[2], 'k', stage)
redis.call('ZADD', runs, 'NX', ARGV[3], ARGV[1])
if finished then
  redis.call('ZADD', done, ARGV[4], ARGV[1])
  local extra = redis.call('ZCARD', done) - tonumber(ARGV[5])
  if extra > 0 then
    local old = redis.call('ZPOPMIN', done, extra)
    for i = 1, #old, 2 do
      redis.call('ZREM', runs, old[i])
      redis.call('DEL', ARGV[7] .. old[i])
    end
  end
end
redis.call('PEXPIRE', rec, ARGV[6])
redis.call('PEXPIRE', runs, ARGV[6])
redis.call('PEXPIRE', done, ARGV[6])
return 1
"""
)

# Queue a run. KEYS: as STORE_RUN, then the user's wait list. ARGV: as STORE_RUN (the record
# queued), then the run's work (JSON: agent, input, thread, timeout), the most runs the user
# may have waiting. Returns the number waiting before it, or -1 when that bound is reached
# (nothing written).
SUBMIT = Script(
    """
local rec, runs, done, wait = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local waiting = redis.call('LLEN', wait)
if waiting >= tonumber(ARGV[10]) then
  return -1
end
redis.call('HSET', rec, 'r', ARGV[2], 'k', 0, 'w', ARGV[9])
redis.call('ZADD', runs, ARGV[3], ARGV[1])
redis.call('RPUSH', wait, ARGV[1])
redis.call('PEXPIRE', rec, ARGV[6])
redis.call('PEXPIRE', runs, ARGV[6])
redis.call('PEXPIRE', wait, ARGV[6])
return waiting
"""
)

# Admit the user's oldest waiting run under the limit. KEYS: the user's slots, wait list.
# ARGV: the limit, the lease (ms), the prefix of record keys. Slots whose lease expired (their
# worker went silent) are freed first. Runs that ended while waiting are skipped. Returns
# {run id, work JSON} or nil (no free slot, or nothing waiting).
ACQUIRE = Script(
    """
local slots, wait = KEYS[1], KEYS[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
if redis.call('ZCARD', slots) >= tonumber(ARGV[1]) then
  return false
end
while true do
  local run = redis.call('LPOP', wait)
  if not run then
    return false
  end
  local rec = ARGV[3] .. run
  if redis.call('HGET', rec, 'k') == '0' then
    redis.call('ZADD', slots, now + tonumber(ARGV[2]), run)
    redis.call('PEXPIRE', slots, tonumber(ARGV[2]) * 2 + 60000)
    return {run, redis.call('HGET', rec, 'w')}
  end
end
"""
)

# Renew a worker's leases. KEYS: the user's slots. ARGV: the lease (ms), then run ids.
# Returns how many were still held.
RENEW = Script(
    """
local t = redis.call('TIME')
local expiry = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
local held = 0
for i = 2, #ARGV do
  held = held + redis.call('ZADD', KEYS[1], 'XX', 'CH', expiry, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]) * 2 + 60000)
return held
"""
)

# Free a run's slot. KEYS: the user's slots, wait list. ARGV: run id. Returns how many runs of
# the user wait (the caller wakes a worker for them).
RELEASE = Script(
    """
redis.call('ZREM', KEYS[1], ARGV[1])
return redis.call('LLEN', KEYS[2])
"""
)
