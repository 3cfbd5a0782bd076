"""The Lua scripts of the Redis store. Each runs atomically; each is one round trip.

Every script gets the key prefix as ARGV[1] and the time (epoch ms) as ARGV[2], and
builds key names from the prefix as ``hub/store/keys.py`` lists them. The helpers they
share come first: enqueueing behind an ordering key, releasing the next job of a key, and
the circuit breaker of a destination.
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

# The helpers, in layers: a script defines its helpers anew each time it runs, so it takes
# only the layers it uses, and one that may end early (a duplicate, nothing due, nothing to
# hand over) makes the later layers past that point. Most of what a script costs Redis is
# its redis.calls, each of which converts its arguments (a Lua number to text with printf)
# and its reply. So a script reads a hash once and keeps what it read and changed
# (`job_of`, `dest_of`), writes it back in one HSET (`save`), and passes numbers as text
# where it has the text.
BASE = """
local p = ARGV[1]
local now = tonumber(ARGV[2])
-- `now` as text: the callers send it as an integer, which Redis writes the same way
local at = ARGV[2]
local function jk(id) return p .. 'job:' .. id end
local function num(value, default)
  if value and value ~= '' then return tonumber(value) end
  return default
end

-- Adds a field and its value to those a hash gets in one HSET (a later value of a field
-- wins, as with separate HSETs).
local function put(w, field, value)
  local n = #w
  w[n + 1] = field
  w[n + 2] = value
end
"""

JOBS = """
-- A ZADD or ZREM of the read side's indexes or the queue: at once, or, while a claim
-- gathers them (`zbuf`), with the others of its key in one call, in the order the key
-- got them. Nothing reads those keys before CLAIM sends them.
local zbuf
local function zwrite(op, key, a, b)
  if not zbuf then
    if b then return redis.call(op, key, a, b) end
    return redis.call(op, key, a)
  end
  local args = zbuf[key]
  if not args then
    zbuf[#zbuf + 1] = key
  elseif args.op ~= op then
    redis.call(args.op, key, unpack(args))
    args = nil
  end
  if not args then
    args = {op = op}
    zbuf[key] = args
  end
  args[#args + 1] = a
  if b then args[#args + 1] = b end
end

-- A job as a script works on it: a table of the fields of its hash that the script uses
-- (`state`, `kind`, `destination`, …) as read or set, `w`, what it still has to write
-- (`save`), and `queued` (`queued_at` as text), its score in the due queue if the script
-- made it due. The jobs whose writes may wait (new ones, the next of an ordering key) are
-- `held`, by id in `known`: `job_of` saves what is pending for a job before its hash is
-- read again.
local known, held = {}, {}

-- A job made due (`later`: by `enqueue` or `leave`) enters the due queue and the due
-- state's indexes only when the script saves it: a job handed over at once never does
-- (its claim removes it from them, which is all that entering and leaving them at once
-- leaves behind). Before anything reads the due queue, the others enter it (`queue`).
local function queue(job)
  local id, kind, dest = job.id, job.kind, job.destination
  job.later = nil
  redis.call('ZADD', p .. 'q:due', job.queued_at, id)
  if not kind then return end
  redis.call('ZADD', p .. 'jobs:due:kind:' .. kind, at, id)
  if dest and dest ~= '' then redis.call('ZADD', p .. 'jobs:due:to:' .. dest, at, id) end
end

local function save(job)
  if job.w[1] then
    redis.call('HSET', jk(job.id), unpack(job.w))
    job.w = {}
  end
  if job.later then queue(job) end
end

local function job_of(id)
  local job = known[id]
  if job then
    save(job)
    return job
  end
  job = {id = id, w = {}, state = nil, kind = nil, destination = nil, payload = nil,
         event_id = nil, created_at = nil, attempts = nil, order_key = nil, queued = nil,
         queued_at = nil, later = nil}  -- all its fields at once
  known[id] = job
  held[#held + 1] = job
  return job
end

-- A job about to be written with the fields `w` (field, value, …), a new one as a rule:
-- its `kind`, `payload`, `event_id` and, if given, destination `dest` as `w` has them.
local function new_job(id, w, kind, payload, event_id, dest)
  local job = job_of(id)
  local f = redis.call('HMGET', jk(id), 'state', 'destination')
  job.state, job.destination, job.kind, job.payload = f[1], dest or f[2], kind, payload
  job.event_id, job.created_at, job.attempts, job.w = event_id, at, '0', w
  return job
end

-- The read side's indexes of jobs: a job's id sits in the sorted set of its state and
-- kind and, for a delivery, of its state and destination, scored by when it entered the
-- state (ms). Their sizes are the gauges; their members are the listings. `cutoff` (ms,
-- as text), if given, trims the new state's sets to what entered it since (done jobs).
local function unindex(id, state, kind, dest)
  if not state or not kind then return end
  zwrite('ZREM', p .. 'jobs:' .. state .. ':kind:' .. kind, id)
  if dest and dest ~= '' then zwrite('ZREM', p .. 'jobs:' .. state .. ':to:' .. dest, id) end
end

local function set_state(job, state, cutoff)
  local id, kind, dest = job.id, job.kind, job.destination
  if job.state == state then return end
  unindex(id, job.state, kind, dest)
  job.state = state
  put(job.w, 'state', state)
  if not kind or job.later then return end  -- a job made due `later` is indexed by `queue`
  local zk = p .. 'jobs:' .. state .. ':kind:' .. kind
  zwrite('ZADD', zk, at, id)
  if cutoff then redis.call('ZREMRANGEBYSCORE', zk, '-inf', cutoff) end
  if dest and dest ~= '' then
    zk = p .. 'jobs:' .. state .. ':to:' .. dest
    zwrite('ZADD', zk, at, id)
    if cutoff then redis.call('ZREMRANGEBYSCORE', zk, '-inf', cutoff) end
  end
end

-- A job joins the jobs of the inbound event it came from; that list lives as long as
-- the event does. `lives` holds what the script knows of an event's time to live (ms;
-- -1: none, -2: gone) and whether its list has it already.
local lives = {}
local function own(id, event_id)
  if not event_id or event_id == '' then return end
  local ek = p .. 'event:' .. event_id
  local life = lives[event_id]
  if not life then
    life = {ttl = redis.call('PTTL', ek)}
    lives[event_id] = life
  end
  if life.ttl == -2 then return end
  redis.call('ZADD', ek .. ':jobs', at, id)
  if life.ttl > 0 and not life.listed then
    redis.call('PEXPIRE', ek .. ':jobs', life.ttl)
    life.listed = true
  end
end

-- Put a job on the queue, due at `due` (`due_at`: as text), unless an older job of its
-- ordering key is unfinished: then it is blocked until that one is done or dead.
local function enqueue(job, due, due_at, okey)
  local id = job.id
  put(job.w, 'due_at', due_at)
  if okey and okey ~= '' then
    local zk = p .. 'order:' .. okey
    redis.call('ZADD', zk, redis.call('INCR', p .. 'seq'), id)
    put(job.w, 'order_key', okey)
    if redis.call('ZRANGE', zk, '0', '0')[1] ~= id then
      set_state(job, 'blocked')
      return false
    end
  end
  job.queued, job.queued_at, job.later = due, due_at, true
  set_state(job, 'due')
  return true
end

-- A job (its `order_key` read) is finished (done or dead): the next job of its ordering
-- key may run. Returns that job, read as a claim needs it, if it was waiting; it is due.
local function leave(job)
  local okey = job.order_key
  if not okey or okey == '' then return nil end
  local zk = p .. 'order:' .. okey
  redis.call('ZREM', zk, job.id)
  local head = redis.call('ZRANGE', zk, '0', '0')[1]
  if not head then return nil end
  local nxt = job_of(head)
  local f = redis.call('HMGET', jk(head), 'state', 'due_at', 'kind', 'destination', 'payload',
                       'event_id', 'created_at', 'attempts')
  if f[1] ~= 'blocked' then return nil end
  nxt.state, nxt.kind, nxt.destination, nxt.payload = f[1], f[3], f[4], f[5]
  nxt.event_id, nxt.created_at, nxt.attempts = f[6], f[7], f[8]
  local due, due_at = now, at
  if num(f[2], now) > now then
    due = num(f[2], now)
    due_at = string.format('%.17g', due)
  end
  nxt.queued, nxt.queued_at, nxt.later = due, due_at, true
  set_state(nxt, 'due')
  put(nxt.w, 'due_at', due_at)
  return nxt
end

-- Drop the job scheduled under `key` (a reminder moved or cancelled), unless it is
-- running: then it finishes.
local function unschedule(key)
  local kk = p .. 'jobkey:' .. key
  local old = redis.call('GET', kk)
  if not old then return end
  redis.call('DEL', kk)
  local job = job_of(old)
  local f = redis.call('HMGET', jk(old), 'state', 'kind', 'destination', 'event_id')
  if f[1] == 'due' or f[1] == 'retry' then
    redis.call('ZREM', p .. 'q:due', old)
    unindex(old, f[1], f[2], f[3])
    if f[4] and f[4] ~= '' then
      redis.call('ZREM', p .. 'event:' .. f[4] .. ':jobs', old)
      lives[f[4]] = nil  -- that list may be gone now, and its expiry with it
    end
    redis.call('DEL', jk(old), jk(old) .. ':attempts')
    job.queued = nil
  end
end
"""

GATES = """
-- A partitioned prefix (it carries a hash tag) leaves the destination gates to GATE and
-- GATE_DONE, which run in each destination's own slot.
local gated = not string.find(p, '{', 1, true)

-- The destinations a script works on, by name: the fields of their hash it read or set,
-- and `w`, what it still has to write (in one HSET each, at its end).
local dests = {}
local function dest_of(dest)
  local d = dests[dest]
  if d then return d end
  local dk = p .. 'dest:' .. dest
  local s = redis.call('HMGET', dk, 'state', 'probe', 'inflight', 'open_until', 'win_start',
                       'ok', 'fail')
  d = {key = dk, state = s[1], probe = s[2], inflight = s[3], open_until = s[4],
       win_start = s[5], ok = s[6], fail = s[7], w = {}}
  dests[dest] = d
  dests[#dests + 1] = d
  return d
end

local function set_circuit(d, state, reason)
  local w = d.w
  d.state = state
  put(w, 'state', state)
  put(w, 'changed_at', at)
  put(w, 'reason', reason or '')
end

-- A claimed job of a destination stops running: finished, retried, released, or its
-- lease ran out. A probe that ends without an outcome lets the next job probe.
local function unclaim(id, dest)
  if not gated or not dest or dest == '' then return end
  local d = dest_of(dest)
  d.inflight = math.max(num(d.inflight, 0) - 1, 0)
  put(d.w, 'inflight', d.inflight)
  if d.probe == id then
    d.probe = ''
    put(d.w, 'probe', '')
  end
end

-- The gates of a destination for one job, with `running` of its jobs running now: 0 if
-- it may run (taking the probe of a circuit open long enough), else when to try it again:
-- behind the jobs of other destinations that are due now when the limit is reached, at
-- the end of an open circuit, later while disabled or while another probe runs.
local function gate(d, id, running, max_in_flight, circuit_off)
  local state = d.state or 'closed'
  if circuit_off and (state == 'open' or state == 'half_open') then state = 'closed' end
  if (max_in_flight or 0) > 0 and running >= max_in_flight then return now + 100 end
  if state == 'disabled' then return now + 60000 end
  if state == 'open' then
    if now < num(d.open_until, 0) then return num(d.open_until, 0) end
    set_circuit(d, 'half_open', 'probing')
  elseif state == 'half_open' then
    if d.probe and d.probe ~= '' then return now + 1000 end
  else
    return 0
  end
  d.probe = id
  put(d.w, 'probe', id)
  return 0
end

-- One outcome for a destination's circuit breaker. Returns the new state if it changed.
-- With the circuit off, only the outcome of a probe still out is taken (it closes).
local function breaker(d, id, health, window, ratio, min_calls, open_for, enabled)
  local state, w = d.state or 'closed', d.w
  if state == 'disabled' or state == 'open' then return nil end
  if state == 'half_open' then
    if d.probe ~= id then return nil end
    d.probe = ''
    put(w, 'probe', '')
    if health == 'ok' or not enabled then
      d.win_start, d.ok, d.fail = at, '0', '0'
      put(w, 'win_start', at)
      put(w, 'ok', '0')
      put(w, 'fail', '0')
      set_circuit(d, 'closed', 'probe succeeded')
      return 'closed'
    end
    d.open_until = now + open_for
    put(w, 'open_until', d.open_until)
    set_circuit(d, 'open', 'probe failed')
    return 'open'
  end
  if not enabled then return nil end
  local start, ok, fail = num(d.win_start, 0), num(d.ok, 0), num(d.fail, 0)
  local start_at = d.win_start  -- as stored, while the window lasts
  if now - start > window then start_at, ok, fail = at, 0, 0 end
  if health == 'ok' then ok = ok + 1 else fail = fail + 1 end
  if ok + fail >= min_calls and fail / (ok + fail) >= ratio then
    local reason = fail .. ' of ' .. (ok + fail) .. ' attempts failed'
    d.open_until, d.win_start, d.ok, d.fail = now + open_for, at, '0', '0'
    put(w, 'open_until', d.open_until)
    put(w, 'win_start', at)
    put(w, 'ok', '0')
    put(w, 'fail', '0')
    set_circuit(d, 'open', reason)
    return 'open'
  end
  d.win_start, d.ok, d.fail = start_at, ok, fail
  put(w, 'win_start', start_at)
  put(w, 'ok', ok)
  put(w, 'fail', fail)
  return nil
end
"""

CLAIMS = """
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

-- Claim the due job (read: kind, payload, destination, event id, created at, attempts,
-- state) under `token`, its lease running out at `expiry` (ms), unless its destination's
-- gates turn it away: it is then due again when they may let it pass. A claimed job's
-- fields join `out`: id, kind, payload, attempts, destination, event id, created at.
local function claim_one(job, out, expiry, token, g)
  local id, dest = job.id, job.destination
  local wait = 0
  if not job.kind then  -- gone
    zwrite('ZREM', p .. 'q:due', id)
    job.queued, job.later = nil, nil
    return false
  elseif not gated and dest and g.held[dest] and g.held[dest] > now then
    wait = g.held[dest]
  elseif gated and dest and dest ~= '' then
    local d = dest_of(dest)
    local running = num(d.inflight, 0)
    wait = gate(d, id, running, g.max_in_flight[dest], g.circuit_off[dest])
    if wait == 0 then
      d.inflight = running + 1
      put(d.w, 'inflight', d.inflight)
    end
  end
  if wait > 0 then
    put(job.w, 'due_at', wait)
    job.queued, job.queued_at = wait, wait
    if not job.later then zwrite('ZADD', p .. 'q:due', wait, id) end
    return false
  end
  zwrite('ZREM', p .. 'q:due', id)
  zwrite('ZADD', p .. 'q:inflight', expiry, id)
  job.queued, job.later = nil, nil
  local attempts = num(job.attempts, 0) + 1
  put(job.w, 'attempts', attempts)
  set_state(job, 'running')
  put(job.w, 'lease', token)
  put(job.w, 'claimed_at', at)
  local n = #out
  out[n + 1], out[n + 2], out[n + 3], out[n + 4] = id, job.kind, job.payload, attempts
  out[n + 5], out[n + 6], out[n + 7] = dest or '', job.event_id or '', job.created_at or '0'
  return true
end

-- Hand a job that just became due over to the caller, claimed, when it has room for it
-- (`hand.room`), the job is due now, and no job due before it waits in the queue: a
-- hand-over never jumps ahead of what a claim would take first. Returns true when the
-- job is due now but left for a claim.
local function hand_over(job, out, hand)
  local due = job.queued
  if not due or due > now then return false end
  if hand.room < 1 then return true end
  for _, other in ipairs(held) do
    if other.later and other ~= job then queue(other) end
  end
  local before = '(' .. job.queued_at
  if redis.call('ZRANGEBYSCORE', p .. 'q:due', '-inf', before, 'LIMIT', '0', '1')[1] then
    return true
  end
  -- turned away by its gates, it is due again when they may let it pass
  if claim_one(job, out, now + hand.lease, hand.token, hand.gates) then
    hand.room = hand.room - 1
  end
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
    BASE
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
  return {existing, 1}  -- a duplicate: done before the helpers are made
end
redis.call('SET', dk, event_id, 'EX', ttl)
"""
    + JOBS
    + """
local fields = redis.call('HSET', p .. 'event:' .. event_id, 'source', source, 'body', body,
                          'received_at', at, 'order_key', okey, 'dispatch_job', job_id)
-- every stored event has these fields: all five new, it is a new event, without expiry
if fields == 5 then lives[event_id] = {ttl = -1} end
redis.call('ZADD', p .. 'events', at, event_id)
redis.call('ZADD', p .. 'ix:source:' .. source, at, event_id)
local job = new_job(job_id, {'kind', 'dispatch', 'payload', payload, 'attempts', '0',
                             'created_at', at, 'event_id', event_id}, 'dispatch', payload,
                    event_id)
own(job_id, event_id)
local out = {event_id, 0}
if not enqueue(job, now, at, okey) or not ARGV[12] or ARGV[12] == '' then
  save(job)
  return out  -- nothing to hand over: done before the claim's helpers are made
end
"""
    + GATES
    + CLAIMS
    + """
local gates = read_gates(1, 0)  -- a dispatch job has no destination
hand_over(job, out, {room = 1, lease = tonumber(ARGV[12]), token = ARGV[13], gates = gates})
save(job)
return out
"""
)

# ARGV: prefix, now, lease ms, limit, lease token, how many due jobs to look at,
#       then triples: destination, its concurrency limit (0: none), circuit on (1) or off (0)
#       (partitioned: destination, held back until ms, 0)
# Returns a flat list: id, kind, payload, attempts, destination, event_id, created_at, …
CLAIM = (
    BASE
    + """
local lease, limit, token, scan = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5], ARGV[6]
local expired = redis.call('ZRANGEBYSCORE', p .. 'q:inflight', '-inf', at, 'LIMIT', '0', '1000')
local due
if not expired[1] then
  due = redis.call('ZRANGEBYSCORE', p .. 'q:due', '-inf', at, 'LIMIT', '0', scan)
  if not due[1] then return {} end  -- nothing to claim: done before the helpers are made
end
"""
    + JOBS
    + GATES
    + CLAIMS
    + """
local g = read_gates(7, #ARGV - 6)
for _, id in ipairs(expired) do
  redis.call('ZREM', p .. 'q:inflight', id)
  local f = redis.call('HMGET', jk(id), 'destination', 'state', 'kind')
  local job = {id = id, w = {}, destination = f[1], state = f[2], kind = f[3]}
  unclaim(id, job.destination)
  set_state(job, 'due')
  put(job.w, 'lease', '')
  put(job.w, 'due_at', at)
  save(job)
  redis.call('ZADD', p .. 'q:due', at, id)
end
if not due then
  due = redis.call('ZRANGEBYSCORE', p .. 'q:due', '-inf', at, 'LIMIT', '0', scan)
end
-- the claim's writes of the queue and the indexes go out together, one call a key
local out, claimed, expiry = {}, 0, string.format('%.17g', now + lease)
zbuf = {}
for _, id in ipairs(due) do
  if claimed >= limit then break end
  local f = redis.call('HMGET', jk(id), 'kind', 'payload', 'destination', 'event_id',
                       'created_at', 'attempts', 'state')
  local job = {id = id, w = {}, kind = f[1], payload = f[2], destination = f[3],
               event_id = f[4], created_at = f[5], attempts = f[6], state = f[7]}
  if claim_one(job, out, expiry, token, g) then claimed = claimed + 1 end
  save(job)
end
for _, key in ipairs(zbuf) do
  local args = zbuf[key]
  redis.call(args.op, key, unpack(args))
end
for _, d in ipairs(dests) do
  if d.w[1] then redis.call('HSET', d.key, unpack(d.w)) end
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
    BASE
    + JOBS
    + GATES
    + """
local id, token, outcome, attempt, extra = ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local health, disable = ARGV[8], ARGV[9]
local k = jk(id)
local f = redis.call('HMGET', k, 'lease', 'destination', 'kind', 'event_id', 'order_key', 'key',
                     'state', 'attempts')
if f[1] ~= token then return {0, ''} end
local dest, kind, event_id = f[2], f[3], f[4]
-- saved before anything else reads its hash
local job = {id = id, w = {}, destination = dest, kind = kind, order_key = f[5], state = f[7]}
redis.call('ZREM', p .. 'q:inflight', id)
local changed = ''
if gated and dest and dest ~= '' then
  local d = dest_of(dest)
  if health ~= '' then
    changed = breaker(d, id, health, tonumber(ARGV[10]), tonumber(ARGV[11]),
                      tonumber(ARGV[12]), tonumber(ARGV[13]), ARGV[14] == '1') or ''
  end
  if disable ~= '' then
    set_circuit(d, 'disabled', disable)
    changed = 'disabled'
  end
  unclaim(id, dest)
end
-- the last 100 attempts are kept
if attempt ~= '' and redis.call('RPUSH', k .. ':attempts', attempt) > 100 then
  redis.call('LTRIM', k .. ':attempts', '-100', '-1')
end
local released, handed = nil, {}
local dispatch = kind == 'dispatch'
if kind == 'deliver' and outcome ~= 'release' then
  -- deliveries per minute by outcome, kept two hours (from the minute's first of an
  -- outcome, which made the key or a field of it)
  local rk = p .. 'rate:' .. math.floor(now / 60000)
  if redis.call('HINCRBY', rk, outcome, '1') == 1 then redis.call('EXPIRE', rk, '7200') end
  if dest and dest ~= '' then
    local w = gated and dest_of(dest).w or {}
    if outcome == 'done' then
      put(w, 'last_ok', at)
    else
      put(w, 'last_fail', at)
      put(w, 'last_fail_job', id)
    end
    if not gated then redis.call('HSET', p .. 'dest:' .. dest, unpack(w)) end
  end
end
if outcome == 'done' then
  local ttl = tonumber(extra)
  local cutoff = string.format('%.17g', now - ttl * 1000)
  set_state(job, 'done', cutoff)
  put(job.w, 'lease', '')
  put(job.w, 'finished_at', at)
  released = leave(job)
  save(job)
  redis.call('EXPIRE', k, extra)
  redis.call('EXPIRE', k .. ':attempts', extra)
  if dispatch then
    local ek = p .. 'event:' .. event_id
    local alive = redis.call('EXPIRE', ek, extra) == 1  -- 0: no such key
    local listed = redis.call('EXPIRE', ek .. ':jobs', extra) == 1
    -- what its jobs spawned below find of it
    if ttl > 0 then lives[event_id] = {ttl = alive and ttl * 1000 or -2, listed = listed} end
    redis.call('ZREMRANGEBYSCORE', p .. 'events', '-inf', cutoff)
    local e = redis.call('HMGET', ek, 'received_at', 'source')
    if e[2] then
      redis.call('ZREMRANGEBYSCORE', p .. 'ix:source:' .. e[2], '-inf', cutoff)
    end
    if ARGV[17] ~= '' and e[1] then
      local note = cjson.decode(ARGV[17])
      redis.call('HSET', ek, 'types', table.concat(note.types, ','), 'booking', note.booking,
                 'email', note.email, 'name', note.name)
      -- indexes of events, scored by receipt, trimmed to the retention and expiring with
      -- their newest entry
      local indexes = {}
      for _, t in ipairs(note.types) do indexes[#indexes + 1] = p .. 'ix:type:' .. t end
      if note.booking ~= '' then indexes[#indexes + 1] = p .. 'ix:booking:' .. note.booking end
      if note.email ~= '' then indexes[#indexes + 1] = p .. 'ix:email:' .. note.email end
      for _, zk in ipairs(indexes) do
        redis.call('ZADD', zk, e[1], event_id)
        redis.call('ZREMRANGEBYSCORE', zk, '-inf', cutoff)
        redis.call('EXPIRE', zk, extra)
      end
    end
  end
elseif outcome == 'retry' then
  set_state(job, 'retry')
  put(job.w, 'lease', '')
  put(job.w, 'due_at', extra)
  redis.call('ZADD', p .. 'q:due', extra, id)
elseif outcome == 'dead' then
  local keep = ARGV[16]
  -- its indexes keep what the dead-letter retention keeps
  local cutoff = string.format('%.17g', now - tonumber(keep) * 1000)
  set_state(job, 'dead', cutoff)
  put(job.w, 'lease', '')
  put(job.w, 'finished_at', at)
  put(job.w, 'reason', extra)
  redis.call('ZADD', p .. 'q:dead', at, id)
  released = leave(job)
  save(job)
  -- dead letters hold personal data: kept for the dead-letter retention, then gone
  redis.call('EXPIRE', k, keep)
  redis.call('EXPIRE', k .. ':attempts', keep)
  if dispatch then
    redis.call('EXPIRE', p .. 'event:' .. event_id, keep)
    redis.call('EXPIRE', p .. 'event:' .. event_id .. ':jobs', keep)
  end
  redis.call('ZREMRANGEBYSCORE', p .. 'q:dead', '-inf', cutoff)
else
  put(job.w, 'attempts', num(f[8], 0) - 1)
  set_state(job, 'due')
  put(job.w, 'lease', '')
  put(job.w, 'due_at', at)
  redis.call('ZADD', p .. 'q:due', at, id)
end
save(job)
-- a finished keyed job: its key no longer names it
if (outcome == 'done' or outcome == 'dead') and f[6] and f[6] ~= '' then
  local kk = p .. 'jobkey:' .. f[6]
  if redis.call('GET', kk) == id then redis.call('DEL', kk) end
end
local gate_values = tonumber(ARGV[21])
local i = 22 + gate_values
local sent = {}  -- the signatures of the messages of each event, added together
for _ = 1, tonumber(ARGV[15]) do
  local sid, key = ARGV[i], ARGV[i + 8]
  if key ~= '' then
    unschedule(key)
    redis.call('SET', p .. 'jobkey:' .. key, sid)
  end
  local new = new_job(sid, {'kind', ARGV[i + 1], 'payload', ARGV[i + 2], 'attempts', '0',
                            'created_at', at, 'destination', ARGV[i + 4],
                            'event_id', ARGV[i + 5], 'key', key},
                      ARGV[i + 1], ARGV[i + 2], ARGV[i + 5], ARGV[i + 4])
  own(sid, ARGV[i + 5])
  if enqueue(new, tonumber(ARGV[i + 3]), ARGV[i + 3], ARGV[i + 6]) then
    handed[#handed + 1] = new
  end
  if ARGV[i + 7] ~= '' then
    local sk = p .. 'event:' .. ARGV[i + 5] .. ':sent'
    local signatures = sent[sk]
    if not signatures then
      signatures = {}
      sent[sk] = signatures
      sent[#sent + 1] = sk
    end
    signatures[#signatures + 1] = ARGV[i + 7]
  end
  i = i + 9
end
for _, sk in ipairs(sent) do
  redis.call('SADD', sk, unpack(sent[sk]))
  redis.call('EXPIRE', sk, extra)
end
while ARGV[i] do
  unschedule(ARGV[i])
  i = i + 1
end
-- the writes left, one HSET a hash
local function close(out)
  for _, held_job in ipairs(held) do save(held_job) end
  for _, d in ipairs(dests) do
    if d.w[1] then redis.call('HSET', d.key, unpack(d.w)) end
  end
  return out
end
if not released and not handed[1] then
  return close({1, changed, 0})  -- nothing to hand over: done before the claim's helpers
end
"""
    + CLAIMS
    + """
local hand = {room = tonumber(ARGV[18]), lease = tonumber(ARGV[19]), token = ARGV[20],
              gates = read_gates(22, gate_values)}
local out, left = {1, changed, 0}, 0
if released and hand_over(released, out, hand) then left = left + 1 end
for _, new in ipairs(handed) do
  if hand_over(new, out, hand) then left = left + 1 end
end
out[3] = left
return close(out)
"""
)

# ARGV: prefix, now, job id.  Returns 1 if the job was dead and is due again, else 0.
REPLAY = (
    BASE
    + JOBS
    + """
local id = ARGV[3]
local k = jk(id)
local f = redis.call('HMGET', k, 'state', 'kind', 'destination', 'event_id', 'order_key')
if f[1] ~= 'dead' then return 0 end
local job = {id = id, state = f[1], kind = f[2], destination = f[3]}
redis.call('ZREM', p .. 'q:dead', id)
redis.call('PERSIST', k)
redis.call('PERSIST', k .. ':attempts')
if f[2] == 'dispatch' then
  redis.call('PERSIST', p .. 'event:' .. f[4])
  redis.call('PERSIST', p .. 'event:' .. f[4] .. ':jobs')
end
job.w = {'attempts', '0', 'reason', '', 'finished_at', '', 'created_at', at}
redis.call('HINCRBY', k, 'replays', '1')
redis.call('RPUSH', k .. ':attempts', cjson.encode({outcome = 'replayed', started_at = now / 1000}))
enqueue(job, now, at, f[5] or '')
save(job)
return 1
"""
)

# ARGV: prefix, now, event id, new job id, job payload, retention s
# Returns {job id, 1 if created | 0 if a replay was pending}, or {'', 0} if the event is gone.
REDISPATCH = (
    BASE
    + JOBS
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
local job = new_job(job_id, {'kind', 'dispatch', 'payload', payload, 'attempts', '0',
                             'created_at', at, 'event_id', event_id}, 'dispatch', payload,
                    event_id)
own(job_id, event_id)
enqueue(job, now, at, redis.call('HGET', ek, 'order_key') or '')
save(job)
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
BOOK = """
local p, at = ARGV[1], ARGV[2]
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
local sequence, stored = 0, seen[1] or '0'
if seen[1] then
  sequence = tonumber(seen[1])
  if bump == '1' then
    sequence = sequence + 1
    stored = string.format('%d', sequence)
  end
end
redis.call('HSET', bk, 'snapshot', snapshot, 'sequence', stored, 'occurred_at', ARGV[7],
           'updated_at', at, 'ev:' .. event_id, stored)
-- every stored booking has a sequence: without one it is new, and has no expiry yet
local keep, current = ARGV[8], -1
if seen[1] then current = redis.call('PTTL', bk) end
if current < 0 or current < tonumber(keep) then
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

# The two halves of one change that a provider sends as two webhooks (Calendly's
# reschedule: the old invitee cancelled, the new one created), in either order.
# ARGV: prefix, now, pair key, role, this half's event, may it go alone now (1|0),
#       ttl s, fallback job id, fallback due ms, fallback job payload, this half's id,
#       the inbound event id of this half
# Returns {'paired', the other half's event} | {'alone'} | {'wait'} | {'done'} |
# {'late', the other half's event}: it timed out and went alone before this half came.
# Idempotent: the same half offered again (a retried job) gets the same answer.
PAIR = (
    BASE
    + JOBS
    + """
local key, role, event, alone_ok, ttl = ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
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
local job = new_job(fid, {'kind', 'timer', 'payload', ARGV[10], 'attempts', '0',
                         'created_at', at, 'key', 'pair|' .. key, 'event_id', ARGV[12]},
                    'timer', ARGV[10], ARGV[12])
own(fid, ARGV[12])
enqueue(job, tonumber(ARGV[9]), ARGV[9], '')
save(job)
return {'wait'}
"""
)

# ARGV: prefix, now, pair key, the timer job's id.
# Returns the waiting half's event if it is still alone (then never to be paired), also
# to the same timer job asking again.
PAIR_TIMEOUT = """
local pk = ARGV[1] .. 'pair:' .. ARGV[3]
local s = redis.call('HMGET', pk, 'state', 'event', 'decided_by')
if s[1] == 'waiting' then
  redis.call('HSET', pk, 'state', 'done', 'decided_by', ARGV[4], 'decision', 'timeout')
  return s[2]
end
if s[1] == 'done' and s[3] == ARGV[4] then return s[2] end
return false
"""

# ARGV: prefix, now, then for each job: id, kind, payload, due ms, destination, event id,
#       ordering key, job key
ENQUEUE = (
    BASE
    + JOBS
    + """
local i = 3
while ARGV[i] do
  local id, key = ARGV[i], ARGV[i + 7]
  if key ~= '' then
    unschedule(key)
    redis.call('SET', p .. 'jobkey:' .. key, id)
  end
  local job = new_job(id, {'kind', ARGV[i + 1], 'payload', ARGV[i + 2], 'attempts', '0',
                           'created_at', at, 'destination', ARGV[i + 4],
                           'event_id', ARGV[i + 5], 'key', key},
                      ARGV[i + 1], ARGV[i + 2], ARGV[i + 5], ARGV[i + 4])
  own(id, ARGV[i + 5])
  enqueue(job, tonumber(ARGV[i + 3]), ARGV[i + 3], ARGV[i + 6])
  save(job)
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
    BASE
    + GATES
    + """
local expiry, dest, max_in_flight = ARGV[3], ARGV[4], tonumber(ARGV[5])
local circuit_off = ARGV[6] == '0'
local d, rk = dest_of(dest), p .. 'running:' .. dest
redis.call('ZREMRANGEBYSCORE', rk, '-inf', at)
if d.probe and d.probe ~= '' and not redis.call('ZSCORE', rk, d.probe) then
  d.probe = ''  -- the probe's lease ran out without an outcome
  put(d.w, 'probe', '')
end
local out, running = {}, redis.call('ZCARD', rk)
for i = 7, #ARGV do
  local entry = ARGV[i]
  local wait = gate(d, entry, running, max_in_flight, circuit_off)
  if wait == 0 then running = running + redis.call('ZADD', rk, expiry, entry) end
  out[#out + 1] = wait
end
if d.w[1] then redis.call('HSET', d.key, unpack(d.w)) end
return out
"""
)

# A job that passed a destination's gates stops running (partitioned layout).
# ARGV: gate prefix, now, destination, entry, health (ok|fail|''), disable reason (''),
#       breaker window ms, failure ratio, minimum attempts, open ms, circuit on (1|0)
# Returns the destination's new circuit state, or ''.
GATE_DONE = (
    BASE
    + GATES
    + """
local dest, entry, health, disable = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local d = dest_of(dest)
redis.call('ZREM', p .. 'running:' .. dest, entry)
local changed = ''
if health ~= '' then
  changed = breaker(d, entry, health, tonumber(ARGV[7]), tonumber(ARGV[8]),
                    tonumber(ARGV[9]), tonumber(ARGV[10]), ARGV[11] == '1') or ''
end
if disable ~= '' then
  set_circuit(d, 'disabled', disable)
  changed = 'disabled'
end
if d.probe == entry then put(d.w, 'probe', '') end
if d.w[1] then redis.call('HSET', d.key, unpack(d.w)) end
return changed
"""
)

# Claimed jobs that a destination's gates turned away go back to wait, their claim not
# counted as an attempt (partitioned layout).
# ARGV: prefix, now, then triples: job id, lease token, due ms.  Returns how many.
GIVE_BACK = (
    BASE
    + JOBS
    + """
local n = 0
for i = 3, #ARGV, 3 do
  local id, due = ARGV[i], ARGV[i + 2]
  local f = redis.call('HMGET', jk(id), 'lease', 'attempts', 'state', 'kind', 'destination')
  if f[1] == ARGV[i + 1] then
    local job = {id = id, w = {'attempts', num(f[2], 0) - 1}, state = f[3], kind = f[4],
                 destination = f[5]}
    redis.call('ZREM', p .. 'q:inflight', id)
    set_state(job, 'due')
    put(job.w, 'lease', '')
    put(job.w, 'due_at', due)
    save(job)
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
