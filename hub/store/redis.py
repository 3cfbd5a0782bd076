"""The Redis store: the ``Store`` protocol on one Redis shared by every gateway and worker.

Every state change is one Lua script from ``hub/store/lua.py``: atomic, one round trip.
With a cipher, event bodies, job payloads, attempt records (response excerpts, errors),
dead-letter reasons, bookings and connector memory are encrypted before they leave the
process; the read side decrypts them, so callers see plain text.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from hub.crypto import Cipher
from hub.errors import StoreError, StoreUnavailable
from hub.store import (
    Accepted,
    Attempt,
    DestinationState,
    EndpointPolicy,
    Handoff,
    Health,
    InboundEvent,
    Job,
    JobInfo,
    NewJob,
    Paired,
    QueueStats,
    Recorded,
    Redispatch,
    StoredBooking,
)
from hub.store.connect import client_for
from hub.store.keys import Keys
from hub.store.lookup import Digests
from hub.store.lua import (
    ACCEPT,
    BOOK,
    CLAIM,
    ENQUEUE,
    FINISH,
    PAIR,
    PAIR_TIMEOUT,
    READ_EVENTS,
    REDISPATCH,
    REPLAY,
)
from hub.store.partitions import current as current_partition
from hub.store.partitions import partition_prefix
from hub.store.reading import RedisReading
from hub.store.reads import Reads, Sender, TurnBatch, sender_for
from hub.store.views import EventNote

__all__ = ["RedisStore"]

_NO_POLICY = EndpointPolicy(circuit=False)


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def _text(value: bytes | str | None) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else value


def _seconds(value: bytes | None) -> float | None:
    return int(value) / 1000 if value else None


_AS_IS = frozenset((bytes, int))


def _wire(values: list[Any]) -> list[bytes | int]:
    """Script arguments as Redis receives them; ValueError for one that cannot be sent."""
    try:
        return [
            v.encode() if type(v) is str else v if type(v) in _AS_IS else _odd(v) for v in values
        ]
    except UnicodeEncodeError as error:
        raise ValueError(f"not valid UTF-8 text: {error.reason}") from None


def _odd(value: Any) -> bytes | int:
    """An argument other than str, bytes or int. A float goes as its repr, the text hiredis
    would send, made here: hiredis takes longer over one float than over the rest of a
    script call's arguments."""
    if isinstance(value, float):
        return repr(float(value)).encode()
    if isinstance(value, bytes | int):
        return value
    if isinstance(value, str):
        return value.encode()
    raise ValueError(f"cannot send a {type(value).__name__} to Redis")


def dedup_digest(key: str) -> str:
    """What a dedup key becomes in Redis: a fixed-size hash of whatever the source gave."""
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


class _Batch(TurnBatch):
    """Calls of one script made in the same turn of the event loop go to Redis together:
    one write, one round trip (on one Redis, with the calls of every other kind through
    the client's ``Sender``). Each call still runs atomically on its own, and each
    caller gets its own result or error. Webhooks accepted together and jobs finishing
    together thus share their round trips.

    A script gets its prefix (ARGV[1]) as its one key too, so a Cluster sends it to the
    slot of its partition. With ``wait`` (min_replicas, timeout ms), ``WAIT`` follows the
    calls on the same connection, and unless that many replicas confirm them, every
    caller hears StoreUnavailable."""

    def __init__(
        self,
        client: aioredis.Redis,
        script: Any,
        wait: tuple[int, int] | None = None,
        sender: Sender | None = None,
        *,
        heavy: bool = False,
    ) -> None:
        super().__init__(client, sender)
        self._script = script
        self._wait = wait
        self.heavy = heavy

    async def __call__(self, args: list[Any]) -> Any:
        return await self.submit(args)

    async def submit(self, args: list[Any]) -> Any:
        # Encoded here, so an argument Redis cannot take fails its own caller only, never
        # the batch it would have joined.
        return await self._submit(_wire(args))

    def _command(self, call: list[Any]) -> tuple[Any, ...]:
        return ("EVALSHA", self._script.sha, 1, call[0], *call)

    async def _send(self, calls: list[list[Any]]) -> list[Any]:
        results = await self._pipeline(calls)
        if any(isinstance(r, NoScriptError) for r in results):  # Redis restarted
            await self._client.script_load(self._script.script)
            results = await self._pipeline(calls)
        if not self._wait:
            return results
        confirmed = min(
            (r for r in results[len(calls) :]),
            key=lambda r: -1 if isinstance(r, Exception) else int(r),
        )
        if isinstance(confirmed, Exception) or int(confirmed) < self._wait[0]:
            raise StoreUnavailable(
                f"{confirmed} of {self._wait[0]} replicas confirmed the write "
                f"within {self._wait[1]} ms"
            )
        return results[: len(calls)]

    async def _pipeline(self, calls: list[list[Any]]) -> list[Any]:
        async with self._client.pipeline(transaction=False) as pipe:
            for args in calls:
                pipe.execute_command("EVALSHA", self._script.sha, 1, args[0], *args)
            if self._wait and isinstance(self._client, RedisCluster):
                # WAIT on each primary written to, on the connection that wrote
                await self._client.initialize()
                nodes = {self._client.get_node_from_key(args[0]) for args in calls}
                for node in nodes:
                    pipe.execute_command("WAIT", *self._wait, target_nodes=node)
                results = await pipe.execute(raise_on_error=False)
                if nodes != {self._client.get_node_from_key(args[0]) for args in calls}:
                    # a slot moved meanwhile (a failover): the calls it redirected ran on
                    # other connections, which those WAITs do not cover
                    raise StoreUnavailable("a slot moved during the write; not confirmed")
                return results
            elif self._wait:
                pipe.execute_command("WAIT", *self._wait)
            return await pipe.execute(raise_on_error=False)


class RedisStore(RedisReading):
    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = "hub",
        dedup_window: float = 3 * 86400,
        retention: float = 7 * 86400,
        dead_letter_retention: float = 30 * 86400,
        booking_horizon: float = 0.0,
        endpoints: Mapping[str, EndpointPolicy] | None = None,
        cipher: Cipher | None = None,
        lookup_keys: list[str] | None = None,
        partitions: int = 1,
        tagged: bool = False,
        min_replicas: int = 0,
        replica_timeout: float = 1.0,
    ) -> None:
        self.redis = client
        self.prefix = prefix
        self.partitions = partitions
        self._partition_keys = [
            Keys(partition_prefix(prefix, i, partitions, tagged)) for i in range(partitions)
        ]
        wait = (min_replicas, _ms(replica_timeout)) if min_replicas else None
        self._wait = wait
        self.digests = Digests(lookup_keys or [])
        self.dedup_window = int(dedup_window)
        self.retention = int(retention)
        self.dead_letter_retention = int(dead_letter_retention)
        # bookings are kept until their end plus this plus retention: the latest time
        # trigger after a meeting still finds its booking
        self.booking_horizon = booking_horizon
        # what a destination remembers of a booking (its appointment id, say) is kept for a
        # year after its last write, plus what a booking itself is kept beyond its end
        self.memory_retention = int(366 * 86400 + booking_horizon + retention)
        self.endpoints = dict(endpoints or {})
        self.cipher = cipher
        # one Redis: the calls of every kind made in a turn go in one write
        sender = self._sender = sender_for(client)
        self._reads = Reads(client, sender)  # dispatch's reads, batched per loop turn
        self._gates = [
            value
            for name, e in self.endpoints.items()
            for value in (name, e.concurrency, 1 if e.circuit else 0)
        ]
        self._accepts = _Batch(client, client.register_script(ACCEPT), wait, sender)
        self._claim = _Batch(client, client.register_script(CLAIM), wait, sender)
        self._finishes = _Batch(client, client.register_script(FINISH), wait, sender, heavy=True)
        self._replay = _Batch(client, client.register_script(REPLAY), wait, sender)
        self._redispatch = _Batch(client, client.register_script(REDISPATCH), wait, sender)
        self._book = _Batch(client, client.register_script(BOOK), wait, sender)
        self._enqueue = _Batch(client, client.register_script(ENQUEUE), wait, sender)
        self._pair = _Batch(client, client.register_script(PAIR), wait, sender)
        self._pair_timeout = _Batch(client, client.register_script(PAIR_TIMEOUT), wait, sender)
        # the read side's listings write on their own: a long one never holds back intake
        self._read_events = _Batch(client, client.register_script(READ_EVENTS))

    @property
    def keys(self) -> Keys:
        """The keys of the partition in scope (see ``hub/store/partitions.py``)."""
        index = current_partition()
        if index is None or index >= self.partitions:
            return self._partition_keys[0]
        return self._partition_keys[index]

    def _claim_gates(self, now: float) -> list[Any]:
        """What CLAIM learns of the destinations' gates."""
        return self._gates

    def _destination_key(self, name: str) -> str:
        return self.keys.destination(name)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisStore:
        return cls(client_for(url), **options)

    async def _call(self, awaitable: Any) -> Any:
        try:
            return await awaitable
        except (RedisConnectionError, RedisTimeoutError, OSError) as error:
            raise StoreUnavailable(f"Redis is unreachable: {error}") from error
        except RedisError as error:
            raise StoreError(f"Redis refused the operation: {error}") from error

    def _seal(self, data: bytes) -> bytes:
        return self.cipher.seal(data) if self.cipher else data

    def _open(self, data: bytes) -> bytes:
        return self.cipher.open(data) if self.cipher else data

    def _payload(self, payload: dict[str, Any]) -> bytes:
        return self._seal(orjson.dumps(payload))

    async def ping(self) -> None:
        await self._call(self.redis.ping())

    async def close(self) -> None:
        await self._accepts.close()
        await self._finishes.close()
        await self._reads.close()
        await self._read_events.close()
        await self.redis.aclose()
        manager = getattr(getattr(self.redis, "connection_pool", None), "sentinel_manager", None)
        for sentinel in manager.sentinels if manager else ():
            await sentinel.aclose()

    async def settings(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for name in ("maxmemory-policy", "appendonly", "appendfsync"):
            found.update(
                {
                    _text(k): _text(v)
                    for k, v in (await self._call(self.redis.config_get(name))).items()
                }
            )
        return found

    # --- intake ------------------------------------------------------------------------

    async def accept(
        self,
        source: str,
        dedup_key: str,
        body: bytes,
        received_at: float,
        event_id: str,
        dispatch_job_id: str,
        order_key: str | None = None,
        dedup_window: float | None = None,
        *,
        partition_key: str | None = None,
        linked_keys: Sequence[str] = (),
        handoff: Handoff | None = None,
    ) -> Accepted:
        token = secrets.token_hex(12)
        result = await self._accept_here(
            source,
            dedup_key,
            body,
            received_at,
            event_id,
            dispatch_job_id,
            order_key,
            dedup_window,
            "",
            handoff,
            token,
        )
        return await self._accepted(result, event_id, received_at, token)

    async def _accepted(self, result: list[Any], event_id: str, now: float, token: str) -> Accepted:
        """ACCEPT's answer (not a route elsewhere): the event's id, and the dispatch job if
        it was handed over."""
        jobs = await self._jobs_from(result[2:], token, now)
        return Accepted(
            id=_text(result[0]) or event_id,
            duplicate=bool(int(result[1])),
            job=jobs[0] if jobs else None,
        )

    async def _accept_here(
        self,
        source: str,
        dedup_key: str,
        body: bytes,
        received_at: float,
        event_id: str,
        dispatch_job_id: str,
        order_key: str | None,
        dedup_window: float | None,
        route_key: str,
        handoff: Handoff | None = None,
        token: str = "",
    ) -> list[Any]:
        """ACCEPT in the partition in scope; its raw answer."""
        return await self._call(
            self._accepts.submit(
                [
                    self.keys.prefix,
                    _ms(received_at),
                    event_id,
                    source,
                    self._seal(body),
                    dedup_digest(dedup_key),
                    int(dedup_window) if dedup_window else self.dedup_window,
                    dispatch_job_id,
                    self._payload({"event_id": event_id}),
                    order_key or "",
                    route_key,
                    _ms(handoff.lease) if handoff and handoff.room > 0 else "",
                    token,
                ]
            )
        )

    async def get_event(self, event_id: str) -> InboundEvent | None:
        data = await self._call(self._reads("HGETALL", self.keys.event(event_id)))
        if not data:
            return None
        return InboundEvent(
            id=event_id,
            source=data[b"source"].decode(),
            received_at=int(data[b"received_at"]) / 1000,
            body=self._open(data[b"body"]),
        )

    # --- the queue ---------------------------------------------------------------------

    async def claim(self, now: float, lease: float, limit: int) -> list[Job]:
        token = secrets.token_hex(12)
        flat = await self._call(
            self._claim(
                args=[
                    self.keys.prefix,
                    _ms(now),
                    _ms(lease),
                    limit,
                    token,
                    limit * 8 + 64,
                    *self._claim_gates(now),
                ]
            )
        )
        return await self._jobs_from(flat, token, now)

    async def _jobs_from(self, flat: list[Any], token: str, now: float) -> list[Job]:
        """The jobs a script claimed, from its flat answer (seven fields each)."""
        jobs = []
        partition = current_partition() or 0
        for i in range(0, len(flat), 7):
            job_id, kind, payload, attempts, destination, event_id, created = flat[i : i + 7]
            try:
                data, error = orjson.loads(self._open(payload)), None
            except (StoreError, ValueError) as failure:
                data, error = {}, failure
            job = Job(
                id=job_id.decode(),
                kind=kind.decode(),
                payload=data,
                attempt=int(attempts),
                lease=token,
                destination=destination.decode() or None,
                event_id=event_id.decode() or None,
                created_at=int(created) / 1000,
                partition=partition,
            )
            if error is not None:
                # It can never run (a key that was dropped, say): a dead letter at once,
                # so it neither blocks the rest of this claim nor comes back every lease.
                reason = f"stored payload cannot be read: {error}"
                await self.bury(
                    job, Attempt(job.attempt, now, 0.0, "dead", error=reason), now, reason
                )
                continue
            jobs.append(job)
        return jobs

    async def _finish_job(
        self,
        job: Job,
        outcome: str,
        now: float,
        attempt: Attempt | None,
        extra: Any,
        *,
        spawn: list[NewJob] | None = None,
        health: Health | None = None,
        disable: str | None = None,
        unschedule: list[str] | None = None,
        note: EventNote | None = None,
        handoff: Handoff | None = None,
    ) -> Recorded:
        policy = self.endpoints.get(job.destination or "", _NO_POLICY)
        room = handoff.room if handoff else 0
        token = secrets.token_hex(12) if room > 0 else ""
        gates = self._claim_gates(now) if room > 0 else []
        args: list[Any] = [
            self.keys.prefix,
            _ms(now),
            job.id,
            job.lease,
            outcome,
            self._payload(attempt.to_json()) if attempt else "",
            extra,
            health or "",
            disable or "",
            _ms(policy.window),
            policy.failure_ratio,
            policy.min_requests,
            _ms(policy.open_for),
            1 if policy.circuit else 0,
            len(spawn or ()),
            self.dead_letter_retention,
            self._note(note),
            room,
            _ms(handoff.lease) if room > 0 else 0,
            token,
            len(gates),
            *gates,
        ]
        for new in spawn or ():
            args += [
                new.id,
                new.kind,
                self._payload(new.payload),
                _ms(new.due),
                new.destination or "",
                new.event_id or "",
                new.order_key or "",
                new.signature or "",
                new.key or "",
            ]
        args += unschedule or []
        kept, changed, *rest = await self._call(self._finishes.submit(args))
        left, handed = (int(rest[0]), rest[1:]) if rest else (0, [])
        jobs = await self._jobs_from(handed, token, now) if handed else []
        return Recorded(bool(kept), _text(changed) or None, tuple(jobs), left)

    def _note(self, note: EventNote | None) -> bytes | str:
        if note is None:
            return ""
        return orjson.dumps(
            {
                "types": note.types,
                "booking": note.booking,
                "email": self.digests.write(note.email),
                "name": note.name,
            }
        )

    async def complete(
        self,
        job: Job,
        attempt: Attempt,
        now: float,
        spawn: list[NewJob] | None = None,
        health: Health | None = None,
        unschedule: list[str] | None = None,
        note: EventNote | None = None,
        handoff: Handoff | None = None,
    ) -> Recorded:
        return await self._finish_job(
            job,
            "done",
            now,
            attempt,
            self.retention,
            spawn=spawn,
            health=health,
            unschedule=unschedule,
            note=note,
            handoff=handoff,
        )

    async def retry(
        self,
        job: Job,
        attempt: Attempt,
        due: float,
        health: Health | None = None,
        now: float | None = None,
    ) -> Recorded:
        now = attempt.started_at if now is None else now
        return await self._finish_job(job, "retry", now, attempt, _ms(due), health=health)

    async def bury(
        self,
        job: Job,
        attempt: Attempt,
        now: float,
        reason: str,
        health: Health | None = None,
        disable: str | None = None,
    ) -> Recorded:
        return await self._finish_job(
            job, "dead", now, attempt, self._seal(reason.encode()), health=health, disable=disable
        )

    async def release(self, job: Job, now: float) -> Recorded:
        return await self._finish_job(job, "release", now, None, "")

    async def enqueue(self, jobs: list[NewJob], now: float) -> int:
        """Put jobs on the queue, in one step per thousand."""
        done = 0
        for start in range(0, len(jobs), 1000):
            args: list[Any] = [self.keys.prefix, _ms(now)]
            for new in jobs[start : start + 1000]:
                args += [
                    new.id, new.kind, self._payload(new.payload), _ms(new.due),
                    new.destination or "", new.event_id or "", new.order_key or "", new.key or "",
                ]  # fmt: skip
            done += int(await self._call(self._enqueue(args=args)))
        return done

    async def next_due(self) -> float | None:
        first = await self._call(self.redis.zrange(self.keys.due, 0, 0, withscores=True))
        return first[0][1] / 1000 if first else None

    # --- bookings ----------------------------------------------------------------------

    async def record_booking(
        self,
        uid: str,
        event_id: str,
        snapshot: dict[str, Any],
        new_version: bool,
        refs: list[str],
        now: float,
        occurred_at: float = 0.0,
    ) -> tuple[int, bool]:
        sequence, stale = await self._call(
            self._book(
                args=[
                    self.keys.prefix,
                    _ms(now),
                    uid,
                    event_id,
                    self._payload(snapshot),
                    1 if new_version else 0,
                    _ms(occurred_at),
                    _ms(self._booking_expiry(snapshot, now) - now),
                    *refs,
                ]
            )
        )
        return int(sequence), bool(stale)

    def _booking_expiry(self, snapshot: dict[str, Any], now: float) -> float:
        """When a booking's record may go: its end, plus the latest time trigger after it,
        plus retention. The invitation link dies with it."""
        try:
            end = datetime.fromisoformat(snapshot["end"]).timestamp()
        except (KeyError, TypeError, ValueError):
            end = now
        return max(end, now) + self.booking_horizon + self.retention

    async def get_booking(self, uid: str) -> StoredBooking | None:
        key = self.keys.booking(uid)
        data = await self._call(self._reads("HMGET", key, "snapshot", "sequence"))
        if not data[0]:
            return None
        return StoredBooking(orjson.loads(self._open(data[0])), int(data[1]))

    async def booking_by_ref(self, ref: str) -> StoredBooking | None:
        uid = await self._call(self._reads("GET", self.keys.booking_ref(ref)))
        return await self.get_booking(uid.decode()) if uid else None

    async def pair(
        self,
        key: str,
        role: str,
        event: dict[str, Any],
        alone_ok: bool,
        fallback: NewJob,
        now: float,
        half: str = "",
    ) -> Paired:
        ttl = max(int(fallback.due - now) * 2, 7 * 86400)
        result = await self._call(
            self._pair(
                args=[
                    self.keys.prefix,
                    _ms(now),
                    key,
                    role,
                    self._payload(event),
                    1 if alone_ok else 0,
                    ttl,
                    fallback.id,
                    _ms(fallback.due),
                    self._payload(fallback.payload),
                    half or event.get("inbound_event_id", ""),
                    fallback.event_id or "",
                ]
            )
        )
        status = result[0].decode()
        partner = (
            orjson.loads(self._open(result[1]))
            if status in ("paired", "late") and len(result) > 1 and result[1]
            else None
        )
        return Paired(status, partner)

    async def pair_timeout(self, key: str, now: float, timer: str = "") -> dict[str, Any] | None:
        event = await self._call(self._pair_timeout(args=[self.keys.prefix, _ms(now), key, timer]))
        return orjson.loads(self._open(event)) if event else None

    async def scheduled(self, key: str) -> JobInfo | None:
        job_id = await self._call(self.redis.get(self.keys.job_key(key)))
        return await self.get_job(job_id.decode()) if job_id else None

    # --- connector memory --------------------------------------------------------------

    async def remember(self, scope: str, key: str, value: str) -> None:
        await self._call(
            self.redis.set(
                self.keys.memory_entry(scope, key),
                self._seal(value.encode()),
                ex=self.memory_retention,
            )
        )

    async def recall(self, scope: str, key: str) -> str | None:
        value = await self._call(self.redis.get(self.keys.memory_entry(scope, key)))
        if value is None:  # remembered before entries had keys of their own
            value = await self._call(self.redis.hget(self.keys.memory(scope), key))
        return self._open(value).decode() if value is not None else None

    async def forget(self, scope: str, key: str) -> None:
        await self._call(self.redis.delete(self.keys.memory_entry(scope, key)))
        await self._call(self.redis.hdel(self.keys.memory(scope), key))

    # --- dead letters and replay -------------------------------------------------------

    async def replay(self, job_id: str, now: float) -> bool:
        return bool(await self._call(self._replay(args=[self.keys.prefix, _ms(now), job_id])))

    async def redispatch(self, event_id: str, job_id: str, now: float, resend: bool) -> Redispatch:
        payload = self._payload({"event_id": event_id, "replay": True, "resend": resend})
        found, created = await self._call(
            self._redispatch(
                args=[self.keys.prefix, _ms(now), event_id, job_id, payload, self.retention]
            )
        )
        return Redispatch(job_id=_text(found) or None, created=bool(int(created)))

    async def sent_signatures(self, event_id: str) -> set[str]:
        members = await self._call(self._reads("SMEMBERS", self.keys.sent(event_id)))
        return {m.decode() for m in members}

    async def enable_destination(self, name: str, now: float) -> None:
        await self._call(
            self.redis.hset(
                self._destination_key(name),
                mapping={
                    "state": "closed",
                    "reason": "enabled by an operator",
                    "changed_at": _ms(now),
                    "probe": "",
                    "ok": 0,
                    "fail": 0,
                    "win_start": _ms(now),
                },
            )
        )

    # --- read side ---------------------------------------------------------------------

    def _job_info(self, job_id: str, data: dict[bytes, bytes], attempts: list[bytes]) -> JobInfo:
        try:
            payload = orjson.loads(self._open(data[b"payload"]))
        except (StoreError, ValueError) as error:
            payload = {"unreadable": str(error)}
        return JobInfo(
            id=job_id,
            kind=data[b"kind"].decode(),
            state=data[b"state"].decode(),
            payload=payload,
            attempts=[self._attempt(a) for a in attempts],
            destination=_text(data.get(b"destination")) or None,
            event_id=_text(data.get(b"event_id")) or None,
            due_at=_seconds(data.get(b"due_at")),
            created_at=int(data.get(b"created_at", b"0")) / 1000,
            finished_at=_seconds(data.get(b"finished_at")),
            reason=self._reason(data.get(b"reason")),
            order_key=_text(data.get(b"order_key")) or None,
        )

    def _attempt(self, record: bytes) -> dict[str, Any]:
        try:
            return orjson.loads(self._open(record))
        except (StoreError, ValueError) as error:
            return {"outcome": "unreadable", "error": str(error)}

    def _reason(self, reason: bytes | None) -> str | None:
        if not reason:
            return None
        try:
            return self._open(reason).decode()
        except StoreError as error:
            return str(error)

    async def _jobs(self, ids: list[str]) -> list[JobInfo]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hgetall(self.keys.job(job_id))
                pipe.lrange(self.keys.attempts(job_id), 0, -1)
            results = await self._call(pipe.execute())
        return [
            self._job_info(job_id, results[2 * i], results[2 * i + 1])
            for i, job_id in enumerate(ids)
            if results[2 * i]
        ]

    async def get_job(self, job_id: str) -> JobInfo | None:
        found = await self._jobs([job_id])
        return found[0] if found else None

    async def dead_letters(
        self, limit: int = 100, destination: str | None = None, since: float | None = None
    ) -> list[JobInfo]:
        """Dead letters, oldest death first."""
        ids = await self.dead_letter_ids(destination, since)
        return await self._jobs(ids[:limit])

    async def destination_states(self, names: list[str]) -> list[DestinationState]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hgetall(self._destination_key(name))
            results = await self._call(pipe.execute())
        states = []
        for name, data in zip(names, results, strict=True):
            states.append(
                DestinationState(
                    name=name,
                    state=(_text(data.get(b"state")) or "closed"),
                    in_flight=int(data.get(b"inflight", 0)),
                    open_until=_seconds(data.get(b"open_until")),
                    window_ok=int(data.get(b"ok", 0)),
                    window_failed=int(data.get(b"fail", 0)),
                    reason=_text(data.get(b"reason")) or None,
                    changed_at=_seconds(data.get(b"changed_at")),
                    last_ok=_seconds(data.get(b"last_ok")),
                    last_fail=_seconds(data.get(b"last_fail")),
                    last_fail_job=_text(data.get(b"last_fail_job")) or None,
                )
            )
        return states

    async def stats(self) -> QueueStats:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcard(self.keys.due)
            pipe.zcard(self.keys.inflight)
            pipe.zcard(self.keys.dead)
            due, in_flight, dead = await self._call(pipe.execute())
        return QueueStats(due=due, in_flight=in_flight, dead=dead)
