"""The Lua scripts of the Redis store. Each runs atomically; each is one round trip.

Every script gets the key prefix as ARGV[1] and the time (epoch ms) as ARGV[2], and
builds key names from the prefix as ``hub/store/keys.py`` lists them. The prelude holds
the helpers they share: enqueueing behind an ordering key, releasing the next job of a
key, and the circuit breaker of a destination.
"""

from __future__ import annotations

__all__ = [
    "ACCEPT",
    "BOOK",
    "CLAIM",
    "ENQUEUE",
    "FINISH",
    "GATE",
    "GATE_DONE",
    "GIVE_BACK",
    "PAIR",
    "PAIR_TIMEOUT",
    "READ_EVENTS",
    "REDISPATCH",
    "REPLAY",
]

PRELUDE = """
local p = ARGV[1]
local now = tonumber(ARGV[2])
-- A partitioned prefix (it carries a hash tag) leaves the destination gates to GATE and
-- GATE_DONE, which run in each destination's own slot.
local gated = not string.find(p, '{', 1, true)
local function jk(id) return p .. 'job:' .. id end
local function num(value, default)
  if value and value ~= '' then return tonumber(value) end
  return default
end

-- The read side's indexes of jobs: a job's id sits in the sorted set of its state and
-- kind and, for a delivery, of its state and destination, scored by when it entered the
-- state (ms). Their sizes are the gauges; their members are the listings. `keep` (s), if
-- given, trims the new state's sets to that age (done jobs).
local function unindex(id, state, kind, dest)
  if not state or not kind then return end
  redis.call('ZREM', p .. 'jobs:' .. state .. ':kind:' .. kind, id)
  if dest and dest ~= '' then redis.call('ZREM', p .. 'jobs:' .. state .. ':to:' .. dest, id) end
end

local function set_state(id, state, keep)
  local k = jk(id)
  local f = redis.call('HMGET', k, 'state', 'kind', 'destination')
  if f[1] == state then return end
  unindex(id, f[1], f[2], f[3])
  redis.call('HSET', k, 'state', state)
  if not f[2] then return end
  local sets = {p .. 'jobs:' .. state .. ':kind:' .. f[2]}
  if f[3] and f[3] ~= '' then sets[2] = p .. 'jobs:' .. state .. ':to:' .. f[3] end
  for _, zk in ipairs(sets) do
    redis.call('ZADD', zk, now, id)
    if keep then redis.call('ZREMRANGEBYSCORE', zk, '-inf', now - keep * 1000) end
  end
end

-- A job joins the jobs of the inbound event it came from; that list lives as long as
-- the event does.
local function own(id, event_id)
  if not event_id or event_id == '' then return end
  local ek = p .. 'event:' .. event_id
  local ttl = redis.call('PTTL', ek)
  if ttl == -2 then return end
  redis.call('ZADD', ek .. ':jobs', now, id)
  if ttl > 0 then redis.call('PEXPIRE', ek .. ':jobs', ttl) end
end

-- An index of events, scored by receipt (ms), trimmed to `keep` seconds and expiring
-- with its newest entry.
local function index_event(zk, received, event_id, keep)
  redis.call('ZADD', zk, received, event_id)
  redis.call('ZREMRANGEBYSCORE', zk, '-inf', now - keep * 1000)
  redis.call('EXPIRE', zk, keep)
end

-- Put a job on the queue, due at `due`, unless an older job of its ordering key is
-- unfinished: then it is blocked until that one is done or dead.
local function enqueue(id, due, okey)
  local k = jk(id)
  redis.call('HSET', k, 'due_at', due)
  if okey and okey ~= '' then
    local zk = p .. 'order:' .. okey
    redis.call('ZADD', zk, redis.call('INCR', p .. 'seq'), id)
    redis.call('HSET', k, 'order_key', okey)
    if redis.call('ZRANGE', zk, 0, 0)[1] ~= id then
      set_state(id, 'blocked')
      return false
    end
  end
  set_state(id, 'due')
  redis.call('ZADD', p .. 'q:due', due, id)
  return true
end

-- A job is finished (done or dead): the next job of its ordering key may run. Returns
-- that job's id if it was waiting and is due now.
local function leave(id)
  local okey = redis.call('HGET', jk(id), 'order_key')
  if not okey or okey == '' then return nil end
  local zk = p .. 'order:' .. okey
  redis.call('ZREM', zk, id)
  local head = redis.call('ZRANGE', zk, 0, 0)[1]
  if head and redis.call('HGET', jk(head), 'state') == 'blocked' then
    local due = math.max(num(redis.call('HGET', jk(head), 'due_at'), now), now)
    set_state(head, 'due')
    redis.call('HSET', jk(head), 'due_at', due)
    redis.call('ZADD', p .. 'q:due', due, head)
    return head
  end
  return nil
end

-- Drop the job scheduled under `key` (a reminder moved or cancelled), unless it is
-- running: then it finishes.
local function unschedule(key)
  local kk = p .. 'jobkey:' .. key
  local old = redis.call('GET', kk)
  if not old then return end
  redis.call('DEL', kk)
  local state = redis.call('HGET', jk(old), 'state')
  if state == 'due' or state == 'retry' then
    redis.call('ZREM', p .. 'q:due', old)
    local f = redis.call('HMGET', jk(old), 'kind', 'destination', 'event_id')
    unindex(old, state, f[1], f[2])
    if f[3] and f[3] ~= '' then redis.call('ZREM', p .. 'event:' .. f[3] .. ':jobs', old) end
    redis.call('DEL', jk(old), jk(old) .. ':attempts')
  end
end

-- A keyed job is finished: its key no longer names it.
local function forget_key(id)
  local key = redis.call('HGET', jk(id), 'key')
  if key and key ~= '' and redis.call('GET', p .. 'jobkey:' .. key) == id then
    redis.call('DEL', p .. 'jobkey:' .. key)
  end
end

local function set_circuit(dk, state, reason)
  redis.call('HSET', dk, 'state', state, 'changed_at', now, 'reason', reason or '')
end

-- A claimed job of a destination stops running: finished, retried, released, or its
-- lease ran out. A probe that ends without an outcome lets the next job probe.
local function unclaim(id, dest)
  if not gated or not dest or dest == '' then return end
  local dk = p .. 'dest:' .. dest
  if redis.call('HINCRBY', dk, 'inflight', -1) < 0 then redis.call('HSET', dk, 'inflight', 0) end
  if redis.call('HGET', dk, 'probe') == id then redis.call('HSET', dk, 'probe', '') end
end

-- The gates of a destination for one job, with `running` of its jobs running now: 0 if
-- it may run (taking the probe of a circuit open long enough), else when to try it again:
-- behind the jobs of other destinations that are due now when the limit is reached, at
-- the end of an open circuit, later while disabled or while another probe runs.
local function gate(dk, id, running, max_in_flight, circuit_off)
  local d = redis.call('HMGET', dk, 'state', 'open_until', 'probe')
  local state = d[1] or 'closed'
  if circuit_off and (state == 'open' or state == 'half_open') then state = 'closed' end
  if (max_in_flight or 0) > 0 and running >= max_in_flight then return now + 100 end
  if state == 'disabled' then return now + 60000 end
  if state == 'open' then
    if now < num(d[2], 0) then return num(d[2], 0) end
    set_circuit(dk, 'half_open', 'probing')
    redis.call('HSET', dk, 'probe', id)
  elseif state == 'half_open' then
    if d[3] and d[3] ~= '' then return now + 1000 end
    redis.call('HSET', dk, 'probe', id)
  end
  return 0
end

-- One outcome for a destination's circuit breaker. Returns the new state if it changed.
-- With the circuit off, only the outcome of a probe still out is taken (it closes).
local function breaker(dest, id, health, window, ratio, min_calls, open_for, enabled)
  local dk = p .. 'dest:' .. dest
  local s = redis.call('HMGET', dk, 'state', 'win_start', 'ok', 'fail', 'probe')
  local state = s[1] or 'closed'
  if state == 'disabled' or state == 'open' then return nil end
  if state == 'half_open' then
    if s[5] ~= id then return nil end
    redis.call('HSET', dk, 'probe', '')
    if health == 'ok' or not enabled then
      redis.call('HSET', dk, 'win_start', now, 'ok', 0, 'fail', 0)
      set_circuit(dk, 'closed', 'probe succeeded')
      return 'closed'
    end
    redis.call('HSET', dk, 'open_until', now + open_for)
    set_circuit(dk, 'open', 'probe failed')
    return 'open'
  end
  if not enabled then return nil end
  local start, ok, fail = num(s[2], 0), num(s[3], 0), num(s[4], 0)
  if now - start > window then start, ok, fail = now, 0, 0 end
  if health == 'ok' then ok = ok + 1 else fail = fail + 1 end
  if ok + fail >= min_calls and fail / (ok + fail) >= ratio then
    redis.call('HSET', dk, 'open_until', now + open_for, 'win_start', now, 'ok', 0, 'fail', 0)
    set_circuit(dk, 'open', fail .. ' of ' .. (ok + fail) .. ' attempts failed')
    return 'open'
  end
  redis.call('HSET', dk, 'win_start', start, 'ok', ok, 'fail', fail)
  return nil
end

-- What a claim knows of the destinations' gates: ARGV from `i` on, `count` values in
-- triples: destination, its concurrency limit (0: none), circuit on (1) or off (0)
-- (partitioned: destination, held back until ms, 0).
local function read_gates(i, count)
  local g = {max_in_flight = {}, circuit_off = {}, held = {}}
  for j = i, i + count - 1, 3 do
    if gated then
      g.max_in_flight[ARGV[j]] = tonumber(ARGV[j + 1])
      g.circuit_off[ARGV[j]] = ARGV[j + 2] == '0'
    else  -- partitioned: destinations whose gate turned jobs away, and until when
      g.held[ARGV[j]] = tonumber(ARGV[j + 1])
    end
  end
  return g
end

local function defer(id, due)
  redis.call('HSET', jk(id), 'due_at', due)
  redis.call('ZADD', p .. 'q:due', due, id)
end

-- Claim the due job `id` for `lease` ms under `token`, unless its destination's gates
-- turn it away (it is then due again when they may let it pass). A claimed job's fields
-- join `out`: id, kind, payload, attempts, destination, event id, created at.
local function claim_one(id, out, lease, token, g)
  local k = jk(id)
  local f = redis.call('HMGET', k, 'kind', 'payload', 'destination', 'event_id', 'created_at')
  if not f[1] then
    redis.call('ZREM', p .. 'q:due', id)
    return false
  elseif not gated and f[3] and g.held[f[3]] and g.held[f[3]] > now then
    defer(id, g.held[f[3]])
    return false
  elseif gated and f[3] and f[3] ~= '' then
    local dest = f[3]
    local dk = p .. 'dest:' .. dest
    local running = num(redis.call('HGET', dk, 'inflight'), 0)
    local wait = gate(dk, id, running, g.max_in_flight[dest], g.circuit_off[dest])
    if wait > 0 then
      defer(id, wait)
      return false
    end
    redis.call('HINCRBY', dk, 'inflight', 1)
  end
  redis.call('ZREM', p .. 'q:due', id)
  redis.call('ZADD', p .. 'q:inflight', now + lease, id)
  local attempts = redis.call('HINCRBY', k, 'attempts', 1)
  set_state(id, 'running')
  redis.call('HSET', k, 'lease', token, 'claimed_at', now)
  for _, v in ipairs({id, f[1], f[2], attempts, f[3] or '', f[4] or '', f[5] or '0'}) do
    out[#out + 1] = v
  end
  return true
end

-- Hand a job that just became due over to the caller, claimed, when it has room for it
-- (`hand.room`), the job is due now, and no job due before it waits in the queue: a
-- hand-over never jumps ahead of what a claim would take first. Returns true when the
-- job is due now but left for a claim.
local function hand_over(id, out, hand)
  local due = redis.call('ZSCORE', p .. 'q:due', id)
  if not due or tonumber(due) > now then return false end
  if hand.room < 1 then return true end
  local head = redis.call('ZRANGE', p .. 'q:due', 0, 0, 'WITHSCORES')
  if head[2] and tonumber(head[2]) < tonumber(due) then return true end
  -- turned away by its gates, it is due again when they may let it pass
  if claim_one(id, out, hand.lease, hand.token, hand.gates) then hand.room = hand.room - 1 end
  return false
end
"""

# ARGV: prefix, now, event id, source, body, dedup key, dedup ttl s, job id, job payload,
#       ordering key, a key whose route to look up first (''), lease ms and lease token to
#       hand the dispatch job over with ('' for none)
# Returns {event id, 1 if a duplicate else 0}, then the dispatch job's fields as CLAIM
# returns them if it was handed over; or {'', 2, the partition prefix the key's route
# names} when the webhook belongs to another partition (a later change of a booking whose
# first webhooks went there).
ACCEPT = (
    PRELUDE
    + """
local event_id, source, body, dedup = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local ttl, job_id, payload, okey = ARGV[7], ARGV[8], ARGV[9], ARGV[10]
if ARGV[11] and ARGV[11] ~= '' then
  local route = redis.call('GET', p .. 'route:' .. ARGV[11])
  if route and route ~= p then return {'', 2, route} end
end
local dk = p .. 'dedup:' .. source .. ':' .. dedup
local existing = redis.call('GET', dk)
if existing then
  -- a write, so that a WAIT after this call also covers the first accept (a retry after
  -- a 503 must not be answered 202 before the stored webhook reached the replicas)
  redis.call('SET', dk, existing, 'KEEPTTL')
  return {existing, 1}
end
redis.call('SET', dk, event_id, 'EX', ttl)
redis.call('HSET', p .. 'event:' .. event_id, 'source', source, 'body', body,
           'received_at', now, 'order_key', okey, 'dispatch_job', job_id)
redis.call('ZADD', p .. 'events', now, event_id)
redis.call('ZADD', p .. 'ix:source:' .. source, now, event_id)
redis.call('HSET', jk(job_id), 'kind', 'dispatch', 'payload', payload, 'attempts', 0,
           'created_at', now, 'event_id', event_id)
own(job_id, event_id)
local out = {event_id, 0}
if enqueue(job_id, now, okey) and ARGV[12] and ARGV[12] ~= '' then
  local gates = read_gates(1, 0)  -- a dispatch job has no destination
  hand_over(job_id, out, {room = 1, lease = tonumber(ARGV[12]), token = ARGV[13], gates = gates})
end
return out
"""
)

# ARGV: prefix, now, lease ms, limit, lease token, how many due jobs to look at,
#       then triples: destination, its concurrency limit (0: none), circuit on (1) or off (0)
#       (partitioned: destination, held back until ms, 0)
# Returns a flat list: id, kind, payload, attempts, destination, event_id, created_at, …
CLAIM = (
    PRELUDE
    + """
local lease, limit, token, scan = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])
local g = read_gates(7, #ARGV - 6)
local expired = redis.call('ZRANGEBYSCORE', p .. 'q:inflight', '-inf', now, 'LIMIT', 0, 1000)
for _, id in ipairs(expired) do
  redis.call('ZREM', p .. 'q:inflight', id)
  unclaim(id, redis.call('HGET', jk(id), 'destination'))
  set_state(id, 'due')
  redis.call('HSET', jk(id), 'lease', '')
  defer(id, now)
end
local out, claimed = {}, 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', p .. 'q:due', '-inf', now, 'LIMIT', 0, scan)) do
  if claimed >= limit then break end
  if claim_one(id, out, lease, token, g) then claimed = claimed + 1 end
end
return out
"""
)

# ARGV: prefix, now, job id, lease token, outcome (done|retry|dead|release),
#       attempt json ('' for release), due ms (retry) | reason (dead) | retention s (done),
#       health (ok|fail|''), disable reason (''), breaker window ms, failure ratio,
#       minimum attempts, open ms, circuit on (1) or off (0), number of spawned jobs,
#       dead-letter retention s, what a finished dispatch found (JSON: canonical types,
#       booking uid, email digest, the provider's event name; '' for none), how many jobs
#       that become due now to hand over to the caller (0: none), their lease ms and
#       lease token, the number of gate values that follow, the gates as CLAIM takes them,
#       then for each spawned job: id, kind, payload, due ms, destination, event id,
#       ordering key, signature, job key (a job already under that key is replaced), then
#       job keys to unschedule
# Returns {1 or 0 (lease lost), the destination's new circuit state or '', how many jobs
# it made due now and left for a claim}, then the fields of the jobs handed over, as CLAIM
# returns them: the job its ordering key let run next, then spawned jobs, in their order.
FINISH = (
    PRELUDE
    + """
local id, token, outcome, attempt, extra = ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local health, disable = ARGV[8], ARGV[9]
local k = jk(id)
if redis.call('HGET', k, 'lease') ~= token then return {0, ''} end
redis.call('ZREM', p .. 'q:inflight', id)
local dest = redis.call('HGET', k, 'destination')
local changed = ''
if gated and dest and dest ~= '' then
  if health ~= '' then
    changed = breaker(dest, id, health, tonumber(ARGV[10]), tonumber(ARGV[11]),
                      tonumber(ARGV[12]), tonumber(ARGV[13]), ARGV[14] == '1') or ''
  end
  if disable ~= '' then
    set_circuit(p .. 'dest:' .. dest, 'disabled', disable)
    changed = 'disabled'
  end
  unclaim(id, dest)
end
if attempt ~= '' then
  redis.call('RPUSH', k .. ':attempts', attempt)
  redis.call('LTRIM', k .. ':attempts', -100, -1)
end
local kind = redis.call('HGET', k, 'kind')
local released, handed = nil, {}
local dispatch = kind == 'dispatch'
local event_id = redis.call('HGET', k, 'event_id')
if kind == 'deliver' and outcome ~= 'release' then
  -- deliveries per minute by outcome, kept two hours
  local rk = p .. 'rate:' .. math.floor(now / 60000)
  redis.call('HINCRBY', rk, outcome, 1)
  redis.call('EXPIRE', rk, 7200)
  if dest and dest ~= '' then
    if outcome == 'done' then
      redis.call('HSET', p .. 'dest:' .. dest, 'last_ok', now)
    else
      redis.call('HSET', p .. 'dest:' .. dest, 'last_fail', now, 'last_fail_job', id)
    end
  end
end
if outcome == 'done' then
  local ttl = tonumber(extra)
  set_state(id, 'done', ttl)
  redis.call('HSET', k, 'lease', '', 'finished_at', now)
  released = leave(id)
  forget_key(id)
  redis.call('EXPIRE', k, ttl)
  redis.call('EXPIRE', k .. ':attempts', ttl)
  if dispatch then
    local ek = p .. 'event:' .. event_id
    redis.call('EXPIRE', ek, ttl)
    redis.call('EXPIRE', ek .. ':jobs', ttl)
    redis.call('ZREMRANGEBYSCORE', p .. 'events', '-inf', now - ttl * 1000)
    local e = redis.call('HMGET', ek, 'received_at', 'source')
    if e[2] then
      redis.call('ZREMRANGEBYSCORE', p .. 'ix:source:' .. e[2], '-inf', now - ttl * 1000)
    end
    if ARGV[17] ~= '' and e[1] then
      local note = cjson.decode(ARGV[17])
      local received = tonumber(e[1])
      redis.call('HSET', ek, 'types', table.concat(note.types, ','), 'booking', note.booking,
                 'email', note.email, 'name', note.name)
      for _, t in ipairs(note.types) do
        index_event(p .. 'ix:type:' .. t, received, event_id, ttl)
      end
      if note.booking ~= '' then
        index_event(p .. 'ix:booking:' .. note.booking, received, event_id, ttl)
      end
      if note.email ~= '' then
        index_event(p .. 'ix:email:' .. note.email, received, event_id, ttl)
      end
    end
  end
elseif outcome == 'retry' then
  set_state(id, 'retry')
  redis.call('HSET', k, 'lease', '', 'due_at', extra)
  redis.call('ZADD', p .. 'q:due', extra, id)
elseif outcome == 'dead' then
  local keep = tonumber(ARGV[16])
  set_state(id, 'dead', keep)  -- its indexes keep what the dead-letter retention keeps
  redis.call('HSET', k, 'lease', '', 'finished_at', now, 'reason', extra)
  redis.call('ZADD', p .. 'q:dead', now, id)
  released = leave(id)
  forget_key(id)
  -- dead letters hold personal data: kept for the dead-letter retention, then gone
  redis.call('EXPIRE', k, keep)
  redis.call('EXPIRE', k .. ':attempts', keep)
  if dispatch then
    redis.call('EXPIRE', p .. 'event:' .. event_id, keep)
    redis.call('EXPIRE', p .. 'event:' .. event_id .. ':jobs', keep)
  end
  redis.call('ZREMRANGEBYSCORE', p .. 'q:dead', '-inf', now - keep * 1000)
else
  redis.call('HINCRBY', k, 'attempts', -1)
  set_state(id, 'due')
  redis.call('HSET', k, 'lease', '', 'due_at', now)
  redis.call('ZADD', p .. 'q:due', now, id)
end
local room, gate_values = tonumber(ARGV[18]), tonumber(ARGV[21])
local hand = {room = room, lease = tonumber(ARGV[19]), token = ARGV[20],
              gates = read_gates(22, gate_values)}
local i = 22 + gate_values
for _ = 1, tonumber(ARGV[15]) do
  local sid, key = ARGV[i], ARGV[i + 8]
  if key ~= '' then
    unschedule(key)
    redis.call('SET', p .. 'jobkey:' .. key, sid)
  end
  redis.call('HSET', jk(sid), 'kind', ARGV[i + 1], 'payload', ARGV[i + 2], 'attempts', 0,
             'created_at', now, 'destination', ARGV[i + 4], 'event_id', ARGV[i + 5],
             'key', key)
  own(sid, ARGV[i + 5])
  if enqueue(sid, tonumber(ARGV[i + 3]), ARGV[i + 6]) then handed[#handed + 1] = sid end
  if ARGV[i + 7] ~= '' then
    local sent = p .. 'event:' .. ARGV[i + 5] .. ':sent'
    redis.call('SADD', sent, ARGV[i + 7])
    redis.call('EXPIRE', sent, tonumber(extra))
  end
  i = i + 9
end
while ARGV[i] do
  unschedule(ARGV[i])
  i = i + 1
end
local out, left = {1, changed, 0}, 0
if released and hand_over(released, out, hand) then left = left + 1 end
for _, sid in ipairs(handed) do
  if hand_over(sid, out, hand) then left = left + 1 end
end
out[3] = left
return out
"""
)

# ARGV: prefix, now, job id.  Returns 1 if the job was dead and is due again, else 0.
REPLAY = (
    PRELUDE
    + """
local id = ARGV[3]
local k = jk(id)
if redis.call('HGET', k, 'state') ~= 'dead' then return 0 end
redis.call('ZREM', p .. 'q:dead', id)
redis.call('PERSIST', k)
redis.call('PERSIST', k .. ':attempts')
if redis.call('HGET', k, 'kind') == 'dispatch' then
  redis.call('PERSIST', p .. 'event:' .. redis.call('HGET', k, 'event_id'))
  redis.call('PERSIST', p .. 'event:' .. redis.call('HGET', k, 'event_id') .. ':jobs')
end
redis.call('HSET', k, 'attempts', 0, 'reason', '', 'finished_at', '', 'created_at', now)
redis.call('HINCRBY', k, 'replays', 1)
redis.call('RPUSH', k .. ':attempts', cjson.encode({outcome = 'replayed', started_at = now / 1000}))
enqueue(id, now, redis.call('HGET', k, 'order_key') or '')
return 1
"""
)

# ARGV: prefix, now, event id, new job id, job payload, retention s
# Returns {job id, 1 if created | 0 if a replay was pending}, or {'', 0} if the event is gone.
REDISPATCH = (
    PRELUDE
    + """
local event_id, job_id, payload, ttl = ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
local ek = p .. 'event:' .. event_id
if redis.call('EXISTS', ek) == 0 then return {'', 0} end
local rk = p .. 'replay:' .. event_id
for _, current in ipairs({redis.call('GET', rk), redis.call('HGET', ek, 'dispatch_job')}) do
  if current then
    local state = redis.call('HGET', jk(current), 'state')
    if state == 'due' or state == 'blocked' or state == 'running' or state == 'retry' then
      return {current, 0}
    end
  end
end
redis.call('SET', rk, job_id, 'EX', ttl)
redis.call('PERSIST', ek)
redis.call('PERSIST', ek .. ':jobs')
redis.call('HSET', jk(job_id), 'kind', 'dispatch', 'payload', payload, 'attempts', 0,
           'created_at', now, 'event_id', event_id)
own(job_id, event_id)
enqueue(job_id, now, redis.call('HGET', ek, 'order_key') or '')
return {job_id, 1}
"""
)

# ARGV: prefix, now, booking uid, event id, snapshot, bump (1: a new version of the
#       booking), when the event happened (ms), how long the booking is kept from now (ms:
#       to its end plus retention; an expiry is only ever moved later), then provider
#       references that name it
# Returns {the booking's sequence as of this event, 1 if the event is older than the
# booking's state (a replay of a past event: nothing is changed) else 0}.
# The same event recorded twice gets its sequence back and changes nothing.
BOOK = (
    PRELUDE
    + """
local uid, event_id, snapshot, bump = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local occurred = tonumber(ARGV[7])
local bk = p .. 'booking:' .. uid
local seen = redis.call('HMGET', bk, 'sequence', 'occurred_at', 'ev:' .. event_id)
if seen[3] then
  local stale = 0
  if occurred < tonumber(seen[2]) then stale = 1 end
  return {tonumber(seen[3]), stale}
end
if seen[2] and occurred < tonumber(seen[2]) then return {tonumber(seen[1]), 1} end
local sequence = 0
if seen[1] then
  sequence = tonumber(seen[1])
  if bump == '1' then sequence = sequence + 1 end
end
redis.call('HSET', bk, 'snapshot', snapshot, 'sequence', sequence, 'occurred_at', occurred,
           'updated_at', now, 'ev:' .. event_id, sequence)
local keep = tonumber(ARGV[8])
local current = redis.call('PTTL', bk)
if current < 0 or current < keep then
  redis.call('PEXPIRE', bk, keep)
else
  keep = current
end
local i = 9
while ARGV[i] do
  redis.call('SET', p .. 'bookref:' .. ARGV[i], uid, 'PX', keep)
  i = i + 1
end
return {sequence, 0}
"""
)

# The two halves of one change that a provider sends as two webhooks (Calendly's
# reschedule: the old invitee cancelled, the new one created), in either order.
# ARGV: prefix, now, pair key, role, this half's event, may it go alone now (1|0),
#       ttl s, fallback job id, fallback due ms, fallback job payload, this half's id,
#       the inbound event id of this half
# Returns {'paired', the other half's event} | {'alone'} | {'wait'} | {'done'} |
# {'late', the other half's event}: it timed out and went alone before this half came.
# Idempotent: the same half offered again (a retried job) gets the same answer.
PAIR = (
    PRELUDE
    + """
local key, role, event, alone_ok, ttl = ARGV[3], ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7])
local half = ARGV[11]
local pk = p .. 'pair:' .. key
local s = redis.call('HMGET', pk, 'state', 'role', 'event', 'half', 'decided_by', 'decision')
if s[1] == 'done' then
  if s[5] == half then return {s[6], s[3]} end
  -- the other half came after its partner timed out and went alone: it is late
  if s[6] == 'timeout' and s[2] ~= role then return {'late', s[3]} end
  return {'done'}
end
if s[1] == 'waiting' then
  if s[4] == half then return {'wait'} end
  if s[2] == role then return {'done'} end
  unschedule('pair|' .. key)
  redis.call('HSET', pk, 'state', 'done', 'decided_by', half, 'decision', 'paired')
  redis.call('EXPIRE', pk, ttl)
  return {'paired', s[3]}
end
if alone_ok == '1' then
  redis.call('HSET', pk, 'state', 'done', 'role', role, 'half', half, 'decided_by', half,
             'decision', 'alone')
  redis.call('EXPIRE', pk, ttl)
  return {'alone'}
end
redis.call('HSET', pk, 'state', 'waiting', 'role', role, 'event', event, 'half', half)
redis.call('EXPIRE', pk, ttl)
local fid = ARGV[8]
redis.call('SET', p .. 'jobkey:pair|' .. key, fid)
redis.call('HSET', jk(fid), 'kind', 'timer', 'payload', ARGV[10], 'attempts', 0,
           'created_at', now, 'key', 'pair|' .. key, 'event_id', ARGV[12])
own(fid, ARGV[12])
enqueue(fid, tonumber(ARGV[9]), '')
return {'wait'}
"""
)

# ARGV: prefix, now, pair key, the timer job's id.
# Returns the waiting half's event if it is still alone (then never to be paired), also
# to the same timer job asking again.
PAIR_TIMEOUT = (
    PRELUDE
    + """
local pk = p .. 'pair:' .. ARGV[3]
local s = redis.call('HMGET', pk, 'state', 'event', 'decided_by')
if s[1] == 'waiting' then
  redis.call('HSET', pk, 'state', 'done', 'decided_by', ARGV[4], 'decision', 'timeout')
  return s[2]
end
if s[1] == 'done' and s[3] == ARGV[4] then return s[2] end
return false
"""
)

# ARGV: prefix, now, then for each job: id, kind, payload, due ms, destination, event id,
#       ordering key, job key
ENQUEUE = (
    PRELUDE
    + """
local i = 3
while ARGV[i] do
  local id, key = ARGV[i], ARGV[i + 7]
  if key ~= '' then
    unschedule(key)
    redis.call('SET', p .. 'jobkey:' .. key, id)
  end
  redis.call('HSET', jk(id), 'kind', ARGV[i + 1], 'payload', ARGV[i + 2], 'attempts', 0,
             'created_at', now, 'destination', ARGV[i + 4], 'event_id', ARGV[i + 5], 'key', key)
  own(id, ARGV[i + 5])
  enqueue(id, tonumber(ARGV[i + 3]), ARGV[i + 6])
  i = i + 8
end
return (i - 3) / 8
"""
)

# The gates of one destination, in its own slot (partitioned layout): which of the jobs
# just claimed from a partition may run now. Each running job holds an entry
# ``{id}|{lease token}`` scored by its lease's expiry, so an entry whose holder died goes
# away with the lease.
# ARGV: gate prefix, now, lease expiry ms, destination, its concurrency limit (0: none),
#       circuit on (1) or off (0), then the entries asking
# Returns, for each entry in order, 0 if it may run, else when to try it again (ms).
GATE = (
    PRELUDE
    + """
local expiry, dest, max_in_flight = tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local circuit_off = ARGV[6] == '0'
local dk, rk = p .. 'dest:' .. dest, p .. 'running:' .. dest
redis.call('ZREMRANGEBYSCORE', rk, '-inf', now)
local probe = redis.call('HGET', dk, 'probe')
if probe and probe ~= '' and not redis.call('ZSCORE', rk, probe) then
  redis.call('HSET', dk, 'probe', '')  -- the probe's lease ran out without an outcome
end
local out = {}
for i = 7, #ARGV do
  local entry = ARGV[i]
  local wait = gate(dk, entry, redis.call('ZCARD', rk), max_in_flight, circuit_off)
  if wait == 0 then redis.call('ZADD', rk, expiry, entry) end
  out[#out + 1] = wait
end
return out
"""
)

# A job that passed a destination's gates stops running (partitioned layout).
# ARGV: gate prefix, now, destination, entry, health (ok|fail|''), disable reason (''),
#       breaker window ms, failure ratio, minimum attempts, open ms, circuit on (1|0)
# Returns the destination's new circuit state, or ''.
GATE_DONE = (
    PRELUDE
    + """
local dest, entry, health, disable = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local dk = p .. 'dest:' .. dest
redis.call('ZREM', p .. 'running:' .. dest, entry)
local changed = ''
if health ~= '' then
  changed = breaker(dest, entry, health, tonumber(ARGV[7]), tonumber(ARGV[8]),
                    tonumber(ARGV[9]), tonumber(ARGV[10]), ARGV[11] == '1') or ''
end
if disable ~= '' then
  set_circuit(dk, 'disabled', disable)
  changed = 'disabled'
end
if redis.call('HGET', dk, 'probe') == entry then redis.call('HSET', dk, 'probe', '') end
return changed
"""
)

# Claimed jobs that a destination's gates turned away go back to wait, their claim not
# counted as an attempt (partitioned layout).
# ARGV: prefix, now, then triples: job id, lease token, due ms.  Returns how many.
GIVE_BACK = (
    PRELUDE
    + """
local n = 0
for i = 3, #ARGV, 3 do
  local id, due = ARGV[i], ARGV[i + 2]
  local k = jk(id)
  if redis.call('HGET', k, 'lease') == ARGV[i + 1] then
    redis.call('ZREM', p .. 'q:inflight', id)
    redis.call('HINCRBY', k, 'attempts', -1)
    set_state(id, 'due')
    redis.call('HSET', k, 'lease', '', 'due_at', due)
    redis.call('ZADD', p .. 'q:due', due, id)
    n = n + 1
  end
end
return n
"""
)

# Read only. ARGV: prefix, then event ids.
# Returns for each event: {source, received_at, name, types, booking, email digest, then
# the states of its jobs}; {} for an event no longer stored.
READ_EVENTS = """
local p = ARGV[1]
local out = {}
for i = 2, #ARGV do
  local ek = p .. 'event:' .. ARGV[i]
  local row = redis.call('HMGET', ek, 'source', 'received_at', 'name', 'types', 'booking', 'email')
  if row[1] then
    for j = 1, 6 do row[j] = row[j] or '' end
    for _, job in ipairs(redis.call('ZRANGE', ek .. ':jobs', 0, -1)) do
      local state = redis.call('HGET', p .. 'job:' .. job, 'state')
      if state then row[#row + 1] = state end
    end
    out[#out + 1] = row
  else
    out[#out + 1] = {}
  end
end
return out
"""
