"""The Lua scripts: each runs atomically on one user's two keys (see ``layout``)."""

from __future__ import annotations

import hashlib

__all__ = [
    "ACQUIRE",
    "APPEND",
    "CANCEL",
    "FINISH",
    "OPEN",
    "REAP",
    "RELEASE",
    "RENEW",
    "STORE_RUN",
    "SUBMIT",
    "Script",
]


class Script:
    """A script's source and SHA1 (sent with ``EVALSHA``; loaded on ``NOSCRIPT``)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()


# What every script that ends runs shares (Lua, prepended to those scripts).
#
# A run's hash (``<prefix>{<user>}:run:<id>``): ``r`` the record (JSON), ``k`` its stage (0
# queued, 1 executing, 2 ended), ``w`` its work, ``i`` its input (JSON), ``a`` the attempt
# executing it (fencing: 1, 2 ... given by ACQUIRE), ``e`` the work-stream entry that admitted
# it (pending to its worker until the run ended), ``n`` its last event's seq, ``d`` its
# deadline (ms, Redis TIME) and ``t`` its timeout (s), ``c`` 1 once a cancel was asked.
#
# ``finish_run`` is the one place a run's end is written: its stage 2, its final record, its
# finished index and bound, its slot freed. Every script that writes a terminal event calls it in
# the same atomic call, after checking the stage is not 2 (and, for a worker's writes, that the
# attempt is current): completion and cancel by the engine (APPEND), a cancel of a queued run
# (CANCEL), the reaper (REAP: worker lost, deadline passed, cancel asked), a dead letter
# (FINISH). So only one of them ever ends a run.
_LIB = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Returns the log's last number and its epoch (created if the log is new).
local function open_log(stream, meta, epoch)
  local h = redis.call('HMGET', meta, 'epoch', 'last')
  if not h[1] then
    redis.call('DEL', stream)
    redis.call('HSET', meta, 'epoch', epoch, 'last', 0)
    return 0, epoch
  end
  return tonumber(h[2]), h[1]
end

local function close_log(stream, meta, last, retention, ttl)
  redis.call('HSET', meta, 'last', last)
  redis.call('XTRIM', stream, 'MAXLEN', retention)
  redis.call('PEXPIRE', stream, ttl)
  redis.call('PEXPIRE', meta, ttl)
end

-- B: {runs, done, slots, kept, ttl, prefix}
local function finish_run(rec, run, record, B)
  local finished = now_ms() / 1000
  redis.call('HSET', rec, 'r', record, 'k', 2)
  redis.call('HDEL', rec, 'w', 'e', 'i')
  redis.call('ZREM', B.slots, run)
  redis.call('ZADD', B.done, finished, run)
  local extra = redis.call('ZCARD', B.done) - B.kept
  if extra > 0 then
    local old = redis.call('ZPOPMIN', B.done, extra)
    for j = 1, #old, 2 do
      redis.call('ZREM', B.runs, old[j])
      redis.call('DEL', B.prefix .. old[j])
    end
  end
  redis.call('PEXPIRE', rec, B.ttl)
  redis.call('PEXPIRE', B.runs, B.ttl)
  redis.call('PEXPIRE', B.done, B.ttl)
end

"""

# What the scripts that write an end no engine wrote add to _LIB.
_LIB_ENDS = """
local function event_head(kind, r, seq, ts)
  return '{"type":"' .. kind .. '","run_id":' .. cjson.encode(r.run_id) .. ',"user_id":'
    .. cjson.encode(r.user_id) .. ',"thread_id":' .. cjson.encode(r.thread_id)
    .. ',"agent":' .. cjson.encode(r.agent) .. ',"seq":' .. seq .. ',"ts":'
    .. cjson.encode(ts) .. ',"cursor":null'
end

-- L: {stream, last, ts}. Writes the events of an end no engine wrote (agent_started first if
-- the run has no event yet, agent_error when error_event, agent_completed), then finish_run.
local function end_here(rec, run, status, err, etype, error_event, L, B)
  local r = cjson.decode(redis.call('HGET', rec, 'r'))
  local n = tonumber(redis.call('HGET', rec, 'n') or '0')
  local attempt = redis.call('HGET', rec, 'a') or '0'
  local now = now_ms() / 1000
  local function add(payload)
    L.last = L.last + 1
    redis.call('XADD', L.stream, L.last .. '-0', 'e', payload, 'a', attempt)
  end
  if n == 0 then
    n = 1
    add(event_head('agent_started', r, n, L.ts) .. ',"input":'
      .. (redis.call('HGET', rec, 'i') or '{}') .. '}')
  end
  if error_event then
    n = n + 1
    add(event_head('agent_error', r, n, L.ts) .. ',"error":' .. cjson.encode(err)
      .. ',"error_type":' .. cjson.encode(etype) .. '}')
  end
  local ms = 0
  if type(r.started_at) == 'number' and now > r.started_at then
    ms = (now - r.started_at) * 1000
  end
  n = n + 1
  add(event_head('agent_completed', r, n, L.ts) .. ',"status":"' .. status
    .. '","output":null,"error":' .. cjson.encode(err) .. ',"duration_ms":'
    .. string.format('%.3f', ms) .. '}')
  r.status = status
  r.output = cjson.null
  r.error = err
  r.error_type = etype
  r.finished_at = now
  r.event_count = n
  redis.call('HSET', rec, 'n', n)
  finish_run(rec, run, cjson.encode(r), B)
end
"""

# The KEYS and first ARGV of the scripts that may end a run without an engine (CANCEL, REAP,
# FINISH). KEYS: the user's stream, meta, runs index, finished index, slots, wait list.
# ARGV: epoch to use if the log is new, retention (events), log expiry (ms), records kept
# finished per user, record expiry (ms), the prefix of record keys, the time (ISO) for events.
_ENDING = """
local L = {stream = KEYS[1], ts = ARGV[7]}
local B = {runs = KEYS[3], done = KEYS[4], slots = KEYS[5], kept = tonumber(ARGV[4]),
           ttl = tonumber(ARGV[5]), prefix = ARGV[6]}
L.last = open_log(KEYS[1], KEYS[2], ARGV[1])
local function close()
  close_log(KEYS[1], KEYS[2], L.last, ARGV[2], ARGV[3])
end
"""

# Append a batch of one user's items. KEYS: stream, meta, and when the batch holds events of
# runs executed by a worker (fenced): runs index, finished index, slots, then those runs'
# hashes. ARGV: publisher id, batch number, epoch to use if the log is new, retention (events),
# expiry (ms), records kept finished per user, record expiry (ms), the prefix of record keys,
# then the items, each led by a number: 0, then the payload (an event, not fenced); -k, k
# events dropped before they were stored (they take numbers n+1..n+k and are written as one
# marker entry at n+k, so that readers learn of the loss at once); k > 0, a fenced event: its
# run's hash is KEYS[k], followed by payload, attempt, seq and final record ('' but for the
# terminal event). Returns {epoch, first number, 1 if already applied, then the indexes
# (0-based) of the items refused}.
#
# Idempotent: a publisher retries a batch with the same number after a failure whose outcome
# it does not know, and the script answers a batch it already applied with its first number
# again, appending nothing. Fencing by attempt: an event of a run executed by a worker is
# refused unless the run's hash names its attempt and the run has not ended; its terminal event
# ends the run (finish_run) in the same call.
APPEND = Script(
    _LIB
    + """
local stream, meta = KEYS[1], KEYS[2]
local B = {runs = KEYS[3], done = KEYS[4], slots = KEYS[5], kept = tonumber(ARGV[6]),
           ttl = tonumber(ARGV[7]), prefix = ARGV[8]}
local last, epoch = open_log(stream, meta, ARGV[3])
local pkey = 'p:' .. ARGV[1]
local done = redis.call('HGET', meta, pkey)
if done then
  local batch, first = string.match(done, '^(%d+):(%d+)$')
  if batch == ARGV[2] then
    return {epoch, tonumber(first), 1}
  end
end
local first = last + 1
local out = {epoch, first, 0}
local i, item = 9, 0
while i <= #ARGV do
  local k = tonumber(ARGV[i])
  if k == 0 then
    last = last + 1
    redis.call('XADD', stream, last .. '-0', 'e', ARGV[i + 1], 'a', '0')
    i = i + 2
  elseif k < 0 then
    last = last - k
    redis.call('XADD', stream, last .. '-0', 'l', -k)
    i = i + 1
  else
    local rec = KEYS[k]
    local h = redis.call('HMGET', rec, 'a', 'k')
    if h[1] == ARGV[i + 2] and h[2] == '1' then
      last = last + 1
      redis.call('XADD', stream, last .. '-0', 'e', ARGV[i + 1], 'a', ARGV[i + 2])
      redis.call('HSET', rec, 'n', ARGV[i + 3])
      if ARGV[i + 4] ~= '' then
        finish_run(rec, string.sub(rec, #ARGV[8] + 1), ARGV[i + 4], B)
      end
    else
      out[#out + 1] = item
    end
    i = i + 5
  end
  item = item + 1
end
redis.call('HSET', meta, pkey, ARGV[2] .. ':' .. first)
close_log(stream, meta, last, ARGV[4], ARGV[5])
return out
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
# queued), then the run's work (JSON: agent, input, thread, timeout, attempts), the most runs
# the user may have waiting, the input (JSON, what agent_started shows if the run is cancelled
# before it starts). Returns the number waiting before it, or -1 when that bound is reached
# (nothing written).
SUBMIT = Script(
    """
local rec, runs, done, wait = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local waiting = redis.call('LLEN', wait)
if waiting >= tonumber(ARGV[10]) then
  return -1
end
redis.call('HSET', rec, 'r', ARGV[2], 'k', 0, 'w', ARGV[9], 'i', ARGV[11])
redis.call('ZADD', runs, ARGV[3], ARGV[1])
redis.call('RPUSH', wait, ARGV[1])
redis.call('PEXPIRE', rec, ARGV[6])
redis.call('PEXPIRE', runs, ARGV[6])
redis.call('PEXPIRE', wait, ARGV[6])
return waiting
"""
)

# Admit the user's oldest waiting run under the limit. KEYS: the user's slots, wait list.
# ARGV: the limit, the lease (ms), the prefix of record keys, the work-stream entry admitting
# it, the default run timeout (s). A slot is held until its run ended (or the reaper ended or
# requeued it): slots whose lease expired still count. Runs that ended while waiting are
# skipped. The run gets its next attempt, its entry and, on its first attempt, its deadline.
# Returns {run id, work JSON, attempt, ms left before the deadline, events so far} or nil (no
# free slot, or nothing waiting).
ACQUIRE = Script(
    _LIB
    + """
local slots, wait = KEYS[1], KEYS[2]
local now = now_ms()
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
    local work = redis.call('HGET', rec, 'w')
    local attempt = redis.call('HINCRBY', rec, 'a', 1)
    local deadline = tonumber(redis.call('HGET', rec, 'd') or '')
    if not deadline then
      local timeout = tonumber(ARGV[5])
      local ok, w = pcall(cjson.decode, work or '')
      if ok and type(w) == 'table' and type(w.timeout) == 'number' and w.timeout > 0 then
        timeout = w.timeout
      end
      deadline = now + math.floor(timeout * 1000)
      redis.call('HSET', rec, 'd', deadline, 't', timeout)
    end
    redis.call('HSET', rec, 'k', 1, 'e', ARGV[4])
    return {run, work, attempt, deadline - now, tonumber(redis.call('HGET', rec, 'n') or '0')}
  end
end
"""
)

# Renew a worker's leases. KEYS: the user's slots. ARGV: the lease (ms), the prefix of record
# keys, then (run id, attempt) pairs. Returns per run 1 (held, renewed), 2 (held, and a cancel
# was asked) or 0 (not this attempt's any more: ended, or taken as lost; stop it).
RENEW = Script(
    _LIB
    + """
local expiry = now_ms() + tonumber(ARGV[1])
local out = {}
for i = 3, #ARGV, 2 do
  local run = ARGV[i]
  local h = redis.call('HMGET', ARGV[2] .. run, 'a', 'k', 'c')
  local state = 0
  if h[1] == ARGV[i + 1] and h[2] == '1' and redis.call('ZSCORE', KEYS[1], run) then
    redis.call('ZADD', KEYS[1], 'XX', expiry, run)
    state = 1
    if h[3] == '1' then
      state = 2
    end
  end
  out[#out + 1] = state
end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]) * 2 + 60000)
return out
"""
)

# After a worker's run ended: KEYS: the user's slots, wait list. ARGV: run id, the prefix of
# record keys, the attempt. Returns how many runs of the user wait (the caller wakes a worker
# for them), or -1 if the run has not ended in Redis (its terminal event was never stored): its
# slot is then left for the reaper, which ends it.
RELEASE = Script(
    """
local h = redis.call('HMGET', ARGV[2] .. ARGV[1], 'a', 'k')
if h[1] == ARGV[3] then
  if h[2] == '1' then
    return -1
  end
  redis.call('ZREM', KEYS[1], ARGV[1])
end
return redis.call('LLEN', KEYS[2])
"""
)

# Cancel a run from any process. KEYS: as _ENDING, then the run's hash. ARGV: as _ENDING, then
# the run id. A queued run ends here at once (agent_started, agent_completed cancelled: its
# agent never runs; the worker taking its entry skips it); a running one is flagged (``c``) for
# its worker. Returns 0 (no such run), 1 (had ended), 2 (ended here), 3 (flagged).
CANCEL = Script(
    _LIB
    + _LIB_ENDS
    + _ENDING
    + """
local rec, run = KEYS[7], ARGV[8]
local k = redis.call('HGET', rec, 'k')
if not k then
  return 0
end
if k == '2' then
  return 1
end
if k == '0' then
  redis.call('LREM', KEYS[6], 0, run)
  end_here(rec, run, 'cancelled', 'the run was cancelled', 'CancelledError', false, L, B)
  close()
  return 2
end
redis.call('HSET', rec, 'c', 1)
return 3
"""
)

# End a run a worker admitted but cannot execute (dead-lettered). KEYS: as CANCEL. ARGV: as
# _ENDING, then run id, attempt, error, error type. Returns 1 if ended here, 0 if it had ended
# or another attempt owns it.
FINISH = Script(
    _LIB
    + _LIB_ENDS
    + _ENDING
    + """
local rec, run = KEYS[7], ARGV[8]
local h = redis.call('HMGET', rec, 'a', 'k')
if h[2] == false or h[2] == '2' or h[1] ~= ARGV[9] then
  return 0
end
end_here(rec, run, 'failed', ARGV[10], ARGV[11], true, L, B)
close()
return 1
"""
)

# The reaper's look at a work-stream entry idle past the lease (claimed with XAUTOCLAIM): the
# entry of a run whose worker went silent, or a wake-up whose worker died before it took a run.
# KEYS: as _ENDING. ARGV: as _ENDING, then the entry id, the lease (s). A run whose lease
# expired is ended here: ``cancelled`` if a cancel was asked, ``timed_out`` past its deadline,
# requeued at the head of the user's wait list when its agent allows another attempt (an
# agent_thinking event says so), else ``failed`` with WorkerLostError. Returns {what, run id,
# runs waiting}: what is alive (lease not expired: leave it), ended (had ended: free its
# entry), cancelled, timed_out, retried, lost, or none (no run holds this entry: a wake-up).
REAP = Script(
    _LIB
    + _LIB_ENDS
    + _ENDING
    + """
local entry, now = ARGV[8], now_ms()
local held = redis.call('ZRANGE', KEYS[5], 0, -1, 'WITHSCORES')
for j = 1, #held, 2 do
  local run = held[j]
  local rec = B.prefix .. run
  local h = redis.call('HMGET', rec, 'e', 'k', 'a', 'c', 'd', 't', 'w', 'n')
  if h[1] == entry then
    local what = 'lost'
    if tonumber(held[j + 1]) > now then
      return {'alive', run, 0}
    elseif h[2] ~= '1' then
      redis.call('ZREM', KEYS[5], run)
      what = 'ended'
    elseif h[4] == '1' then
      end_here(rec, run, 'cancelled', 'the run was cancelled', 'CancelledError', false, L, B)
    elseif h[5] and now >= tonumber(h[5]) then
      what = 'timed_out'
      end_here(rec, run, 'timed_out', 'run exceeded its deadline of '
        .. (h[6] or '?') .. 's (its worker was lost)', 'TimeoutError', true, L, B)
    else
      local attempt, attempts = tonumber(h[3]), 1
      local ok, w = pcall(cjson.decode, h[7] or '')
      if ok and type(w) == 'table' and type(w.attempts) == 'number' then
        attempts = w.attempts
      end
      if attempt < attempts then
        what = 'retried'
        local r = cjson.decode(redis.call('HGET', rec, 'r'))
        local n = tonumber(h[8] or '0') + 1
        L.last = L.last + 1
        redis.call('XADD', L.stream, L.last .. '-0', 'e', event_head('agent_thinking', r, n, L.ts)
          .. ',"text":' .. cjson.encode('the worker executing attempt ' .. attempt .. ' of '
          .. attempts .. ' was lost; retrying (attempt ' .. (attempt + 1) .. ' of ' .. attempts
          .. ')') .. ',"step":1,"reasoning":false}', 'a', h[3])
        r.status = 'queued'
        redis.call('HSET', rec, 'n', n, 'k', 0, 'r', cjson.encode(r))
        redis.call('HDEL', rec, 'e')
        redis.call('ZREM', KEYS[5], run)
        redis.call('LPUSH', KEYS[6], run)
      else
        end_here(rec, run, 'failed', 'the worker executing this run was lost (silent for '
          .. 'over ' .. ARGV[9] .. 's, the lease): it was stopped or died', 'WorkerLostError',
          true, L, B)
      end
    end
    close()
    return {what, run, redis.call('LLEN', KEYS[6])}
  end
end
return {'none', '', redis.call('LLEN', KEYS[6])}
"""
)
