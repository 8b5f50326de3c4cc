"""The Lua scripts: each runs atomically on one user's two keys (see ``layout``)."""

from __future__ import annotations

import hashlib

__all__ = ["APPEND", "OPEN", "STORE_RUN", "Script"]


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
redis.call('ZADD', runs, ARGV[3], ARGV[1])
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
