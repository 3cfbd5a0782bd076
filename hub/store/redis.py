"""The Redis store. Every state change is one Lua script: atomic, one round trip."""

from __future__ import annotations

import secrets
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from hub.errors import StoreError, StoreUnavailable
from hub.store import Accepted, Attempt, InboundEvent, Job, JobInfo, NewJob, QueueStats
from hub.store.keys import Keys

__all__ = ["RedisStore"]

# KEYS: dedup, event, events index, dispatch job, due index
# ARGV: event id, source, body, received ms, dedup ttl s, job id, job payload
_ACCEPT = """
local existing = redis.call('GET', KEYS[1])
if existing then return {existing, 1} end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[5])
redis.call('HSET', KEYS[2], 'source', ARGV[2], 'body', ARGV[3], 'received_at', ARGV[4],
           'dispatch_job', ARGV[6])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
redis.call('HSET', KEYS[4], 'kind', 'dispatch', 'payload', ARGV[7], 'state', 'due',
           'attempts', 0, 'created_at', ARGV[4], 'due_at', ARGV[4], 'event_id', ARGV[1])
redis.call('ZADD', KEYS[5], ARGV[4], ARGV[6])
return {ARGV[1], 0}
"""

# KEYS: due, inflight.  ARGV: prefix, now ms, lease ms, limit, lease token
# Returns a flat list: id, kind, payload, attempts, destination, event_id, created_at, …
_CLAIM = """
local p, now, lease, limit, token = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]),
                                    tonumber(ARGV[4]), ARGV[5]
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 1000)
for _, id in ipairs(expired) do
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZADD', KEYS[1], now, id)
  redis.call('HSET', p .. 'job:' .. id, 'state', 'due', 'lease', '', 'due_at', now)
end
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, limit)
local out = {}
for _, id in ipairs(ids) do
  local jk = p .. 'job:' .. id
  redis.call('ZREM', KEYS[1], id)
  local f = redis.call('HMGET', jk, 'kind', 'payload', 'destination', 'event_id', 'created_at')
  if f[1] then
    redis.call('ZADD', KEYS[2], now + lease, id)
    local attempts = redis.call('HINCRBY', jk, 'attempts', 1)
    redis.call('HSET', jk, 'state', 'running', 'lease', token, 'claimed_at', now)
    for _, v in ipairs({id, f[1], f[2], attempts, f[3] or '', f[4] or '', f[5] or '0'}) do
      out[#out + 1] = v
    end
  end
end
return out
"""

# KEYS: due, inflight, dead, events index.
# ARGV: prefix, job id, lease token, outcome (done|retry|dead|release), now ms,
#       attempt json ('' for release), due ms (retry) | reason (dead) | retention s (done),
#       then for each spawned job: id, kind, payload, due ms, destination, event id
_FINISH = """
local p, id, token, outcome, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local jk = p .. 'job:' .. id
if redis.call('HGET', jk, 'lease') ~= token then return 0 end
redis.call('ZREM', KEYS[2], id)
if ARGV[6] ~= '' then redis.call('RPUSH', jk .. ':attempts', ARGV[6]) end
if outcome == 'done' then
  local ttl = tonumber(ARGV[7])
  redis.call('HSET', jk, 'state', 'done', 'lease', '', 'finished_at', now)
  redis.call('EXPIRE', jk, ttl)
  redis.call('EXPIRE', jk .. ':attempts', ttl)
  if redis.call('HGET', jk, 'kind') == 'dispatch' then
    local event_id = redis.call('HGET', jk, 'event_id')
    redis.call('EXPIRE', p .. 'event:' .. event_id, ttl)
    redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', tonumber(now) - ttl * 1000)
  end
elseif outcome == 'retry' then
  redis.call('HSET', jk, 'state', 'retry', 'lease', '', 'due_at', ARGV[7])
  redis.call('ZADD', KEYS[1], ARGV[7], id)
elseif outcome == 'dead' then
  redis.call('HSET', jk, 'state', 'dead', 'lease', '', 'finished_at', now, 'reason', ARGV[7])
  redis.call('ZADD', KEYS[3], now, id)
else
  redis.call('HINCRBY', jk, 'attempts', -1)
  redis.call('HSET', jk, 'state', 'due', 'lease', '', 'due_at', now)
  redis.call('ZADD', KEYS[1], now, id)
end
local i = 8
while ARGV[i] do
  local sk = p .. 'job:' .. ARGV[i]
  redis.call('HSET', sk, 'kind', ARGV[i + 1], 'payload', ARGV[i + 2], 'state', 'due',
             'attempts', 0, 'created_at', now, 'due_at', ARGV[i + 3],
             'destination', ARGV[i + 4], 'event_id', ARGV[i + 5])
  redis.call('ZADD', KEYS[1], ARGV[i + 3], ARGV[i])
  i = i + 6
end
return 1
"""


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def _text(value: bytes | str | None) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else value


class RedisStore:
    """The Store protocol on Redis; any number of gateways and workers may share one."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = "hub",
        dedup_window: float = 3 * 86400,
        retention: float = 7 * 86400,
    ) -> None:
        self.redis = client
        self.keys = Keys(prefix)
        self.dedup_window = int(dedup_window)
        self.retention = int(retention)
        self._accept = client.register_script(_ACCEPT)
        self._claim = client.register_script(_CLAIM)
        self._finish = client.register_script(_FINISH)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisStore:
        client = aioredis.Redis.from_url(
            url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=10
        )
        return cls(client, **options)

    async def _call(self, coro: Any) -> Any:
        try:
            return await coro
        except (RedisConnectionError, RedisTimeoutError, OSError) as error:
            raise StoreUnavailable(f"Redis is unreachable: {error}") from error
        except RedisError as error:
            raise StoreError(f"Redis refused the operation: {error}") from error

    async def ping(self) -> None:
        await self._call(self.redis.ping())

    async def close(self) -> None:
        await self.redis.aclose()

    # --- intake ------------------------------------------------------------------------

    async def accept(
        self,
        source: str,
        dedup_key: str,
        body: bytes,
        received_at: float,
        event_id: str,
        dispatch_job_id: str,
    ) -> Accepted:
        k = self.keys
        payload = orjson.dumps({"event_id": event_id})
        result = await self._call(
            self._accept(
                keys=[
                    k.dedup(source, dedup_key),
                    k.event(event_id),
                    k.events,
                    k.job(dispatch_job_id),
                    k.due,
                ],
                args=[
                    event_id,
                    source,
                    body,
                    _ms(received_at),
                    self.dedup_window,
                    dispatch_job_id,
                    payload,
                ],
            )
        )
        return Accepted(id=_text(result[0]) or event_id, duplicate=bool(int(result[1])))

    async def get_event(self, event_id: str) -> InboundEvent | None:
        data = await self._call(self.redis.hgetall(self.keys.event(event_id)))
        if not data:
            return None
        return InboundEvent(
            id=event_id,
            source=data[b"source"].decode(),
            received_at=int(data[b"received_at"]) / 1000,
            body=data[b"body"],
        )

    # --- the queue ---------------------------------------------------------------------

    async def claim(self, now: float, lease: float, limit: int) -> list[Job]:
        token = secrets.token_hex(12)
        flat = await self._call(
            self._claim(
                keys=[self.keys.due, self.keys.inflight],
                args=[self.keys.prefix, _ms(now), _ms(lease), limit, token],
            )
        )
        jobs = []
        for i in range(0, len(flat), 7):
            job_id, kind, payload, attempts, destination, event_id, created = flat[i : i + 7]
            jobs.append(
                Job(
                    id=job_id.decode(),
                    kind=kind.decode(),
                    payload=orjson.loads(payload),
                    attempt=int(attempts),
                    lease=token,
                    destination=_text(destination) or None,
                    event_id=_text(event_id) or None,
                    created_at=int(created) / 1000,
                )
            )
        return jobs

    async def _finish_job(
        self,
        job: Job,
        outcome: str,
        now: float,
        attempt: Attempt | None,
        extra: Any,
        spawn: list[NewJob] | None = None,
    ) -> bool:
        k = self.keys
        args: list[Any] = [
            k.prefix,
            job.id,
            job.lease,
            outcome,
            _ms(now),
            orjson.dumps(attempt.to_json()) if attempt else "",
            extra,
        ]
        for new in spawn or ():
            args += [
                new.id,
                new.kind,
                orjson.dumps(new.payload),
                _ms(new.due),
                new.destination or "",
                new.event_id or "",
            ]
        done = await self._call(self._finish(keys=[k.due, k.inflight, k.dead, k.events], args=args))
        return bool(done)

    async def complete(
        self, job: Job, attempt: Attempt, now: float, spawn: list[NewJob] | None = None
    ) -> bool:
        return await self._finish_job(job, "done", now, attempt, self.retention, spawn)

    async def retry(self, job: Job, attempt: Attempt, due: float) -> bool:
        return await self._finish_job(job, "retry", attempt.started_at, attempt, _ms(due))

    async def bury(self, job: Job, attempt: Attempt, now: float, reason: str) -> bool:
        return await self._finish_job(job, "dead", now, attempt, reason)

    async def release(self, job: Job, now: float) -> bool:
        return await self._finish_job(job, "release", now, None, "")

    async def next_due(self) -> float | None:
        first = await self._call(self.redis.zrange(self.keys.due, 0, 0, withscores=True))
        return first[0][1] / 1000 if first else None

    # --- read side ---------------------------------------------------------------------

    async def get_job(self, job_id: str) -> JobInfo | None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys.job(job_id))
            pipe.lrange(self.keys.attempts(job_id), 0, -1)
            data, attempts = await self._call(pipe.execute())
        if not data:
            return None
        due_at = data.get(b"due_at")
        return JobInfo(
            id=job_id,
            kind=data[b"kind"].decode(),
            state=data[b"state"].decode(),
            payload=orjson.loads(data[b"payload"]),
            attempts=[orjson.loads(a) for a in attempts],
            destination=_text(data.get(b"destination")) or None,
            event_id=_text(data.get(b"event_id")) or None,
            due_at=int(due_at) / 1000 if due_at else None,
            reason=_text(data.get(b"reason")),
        )

    async def dead_letters(self, limit: int = 100) -> list[str]:
        ids = await self._call(self.redis.zrange(self.keys.dead, 0, limit - 1))
        return [i.decode() for i in ids]

    async def stats(self) -> QueueStats:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcard(self.keys.due)
            pipe.zcard(self.keys.inflight)
            pipe.zcard(self.keys.dead)
            due, in_flight, dead = await self._call(pipe.execute())
        return QueueStats(due=due, in_flight=in_flight, dead=dead)
