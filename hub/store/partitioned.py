"""The Redis store over partitions: for a Redis Cluster, or to prepare a single Redis for one.

Each partition is a key prefix with a hash tag (``hub/store/partitions.py``), so every Lua
script runs in one slot. What this adds to ``RedisStore``:

- **Intake.** A webhook goes to the partition of its ordering key. A key that names a later
  version of a booking (Calendly's new invitee of a reschedule) gets a *route* to the
  partition of the booking's first webhooks, written before the webhook that reveals it is
  accepted; ACCEPT looks the route up and sends the webhook on when it names another
  partition. A whole chain of reschedules thus stays in one partition.
- **Claims.** One pipelined look at the head of every partition's due and in-flight
  indexes (one round trip per node), then CLAIM in the partitions that have work only,
  their share of the limit each, starting one partition further each time; what some
  partitions could not fill goes to the others in a second round.
- **Destination gates.** A destination's concurrency limit and circuit breaker live in
  its own slot. Jobs claimed from a partition pass GATE there (atomic within the
  destination: the limit is never exceeded and one probe runs at a time); those it turns
  away go back with GIVE_BACK, their claim not counted. An outcome is recorded in the
  partition first (FINISH), then in the gate (GATE_DONE). Between the two steps nothing
  is atomic: a worker that dies there leaves a gate entry that goes away when its lease
  runs out (the job is then claimed again, one attempt spent), and an outcome lost there
  is one sample fewer for the breaker.
- **The read side** (events, jobs, bookings, dead letters, replay, stats, the admin
  listings and counts) asks every partition, unless a job is in scope: then its
  partition is the one.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from hub.errors import StoreError
from hub.store import (
    Accepted,
    DestinationState,
    Handoff,
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
from hub.store.keys import Keys
from hub.store.lua import GATE, GATE_DONE, GIVE_BACK
from hub.store.partitions import current, gate_prefix, partition_of, scope
from hub.store.redis import _NO_POLICY, RedisStore, _Batch, _ms, _text
from hub.store.views import EventRecord

__all__ = ["PartitionedStore"]

T = TypeVar("T")
ROUTE_TTL = 400 * 86400  # a booking may be moved again many months later


class PartitionedStore(RedisStore):
    def __init__(self, client: Any, *, partitions: int = 16, **options: Any) -> None:
        super().__init__(client, partitions=partitions, tagged=True, **options)
        self._index = {keys.prefix: i for i, keys in enumerate(self._partition_keys)}
        wait, sender = self._wait, self._sender
        self._gate = _Batch(client, client.register_script(GATE), wait, sender)
        self._gate_done = _Batch(client, client.register_script(GATE_DONE), wait, sender)
        self._give_back = _Batch(client, client.register_script(GIVE_BACK), wait, sender)
        self._turn = 0
        self._held: dict[str, int] = {}  # destination → until when its gate turns jobs away

    # --- helpers -----------------------------------------------------------------------

    def keys_of(self, key: str) -> Keys:
        """The keys of the partition an ordering key goes to (without a route)."""
        return self._partition_keys[partition_of(key, self.partitions)]

    def _gate_keys(self, destination: str) -> Keys:
        return Keys(gate_prefix(self.prefix, destination))

    def _claim_gates(self, now: float) -> list[Any]:
        # A gate that just turned a destination's jobs away holds the rest back until
        # then, in CLAIM itself: no claim and give-back for each of them.
        self._held = {d: until for d, until in self._held.items() if until > _ms(now)}
        return [value for d, until in self._held.items() for value in (d, until, 0)]

    def _destination_key(self, name: str) -> str:
        return self._gate_keys(name).destination(name)

    async def _in(self, index: int, call: Callable[[], Awaitable[T]]) -> T:
        with scope(index):
            return await call()

    async def _everywhere(self, call: Callable[[], Awaitable[T]]) -> list[T]:
        """``call`` in every partition, concurrently."""
        return await asyncio.gather(*(self._in(i, call) for i in range(self.partitions)))

    async def _first(self, call: Callable[[], Awaitable[T | None]]) -> T | None:
        """In the partition in scope; outside a job, the first partition that has it."""
        if current() is not None:
            return await call()
        for found in await self._everywhere(call):
            if found:
                return found
        return None

    async def _where(self, key: Callable[[Keys], str]) -> int | None:
        """The partition holding a key (a job, an event), if any."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for keys in self._partition_keys:
                pipe.exists(key(keys))
            found = await self._call(pipe.execute())
        return next((i for i, n in enumerate(found) if n), None)

    def _home(self, key: str) -> int:
        here = current()
        return here if here is not None else partition_of(key, self.partitions)

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
        key = partition_key or order_key or f"{source}:{dedup_key}"
        index = partition_of(key, self.partitions)
        route_key = key
        if linked_keys:
            # Later webhooks of this booking carry these keys: route them to its partition
            # before this webhook is accepted, so no order of failures can split the booking.
            index = await self._resolve(key, index)
            await self._route(linked_keys, index)
            route_key = ""
        args = (source, dedup_key, body, received_at, event_id, dispatch_job_id, order_key)
        window = dedup_window
        token = secrets.token_hex(12)
        for _ in range(2):
            with scope(index):
                result = await self._accept_here(*args, window, route_key, handoff, token)
                if int(result[1]) != 2:
                    return await self._accepted(result, event_id, received_at, token)
            routed = self._index.get(_text(result[2]) or "")
            if routed is None:
                raise StoreError(f"the route of {key!r} names an unknown partition")
            index, route_key = routed, ""
        raise AssertionError("unreachable: the second ACCEPT has no route to follow")

    async def _resolve(self, key: str, home: int) -> int:
        with scope(home):
            route = await self._call(self.redis.get(self.keys.route(key)))
        return self._index.get(_text(route) or "", home)

    async def _route(self, keys: Sequence[str], index: int) -> None:
        target = self._partition_keys[index].prefix
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                route = self._partition_keys[partition_of(key, self.partitions)].route(key)
                pipe.set(route, target, nx=True, ex=ROUTE_TTL)
            if self._wait:
                pipe.execute_command("WAIT", *self._wait)
            await self._call(pipe.execute())

    async def get_event(self, event_id: str) -> InboundEvent | None:
        return await self._first(lambda: RedisStore.get_event(self, event_id))

    # --- the queue ---------------------------------------------------------------------

    async def _ready(self, now: float) -> list[int]:
        """Partitions with due jobs or run-out leases at ``now``: one pipelined look."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for keys in self._partition_keys:
                pipe.zrange(keys.due, 0, 0, withscores=True)
                pipe.zrange(keys.inflight, 0, 0, withscores=True)
            heads = await self._call(pipe.execute())
        limit = _ms(now)
        return [
            i
            for i in range(self.partitions)
            if any(head and head[0][1] <= limit for head in heads[2 * i : 2 * i + 2])
        ]

    async def claim(self, now: float, lease: float, limit: int) -> list[Job]:
        ready = await self._ready(now)
        if not ready or limit <= 0:
            return []
        self._turn = (self._turn + 1) % self.partitions
        ready.sort(key=lambda i: (i - self._turn) % self.partitions)
        ready = ready[:limit]
        jobs: list[Job] = []
        for _ in range(2):  # a second round gives what some partitions left to the others
            share, extra = divmod(limit - len(jobs), len(ready))
            asks = [(i, share + (1 if n < extra else 0)) for n, i in enumerate(ready)]
            asks = [(i, k) for i, k in asks if k > 0]
            found = await asyncio.gather(
                *(self._in(i, lambda k=k: RedisStore.claim(self, now, lease, k)) for i, k in asks)
            )
            jobs += [job for part in found for job in part]
            ready = [i for (i, k), part in zip(asks, found, strict=True) if len(part) == k]
            if not ready or len(jobs) >= limit:
                break
        return await self._pass_gates(jobs, now, lease)

    async def _pass_gates(self, jobs: list[Job], now: float, lease: float) -> list[Job]:
        by_destination: dict[str, list[Job]] = defaultdict(list)
        for job in jobs:
            if job.destination:
                by_destination[job.destination].append(job)
        if not by_destination:
            return jobs

        async def gate(destination: str, group: list[Job]) -> list[tuple[Job, int]]:
            policy = self.endpoints.get(destination)
            waits = await self._call(
                self._gate(
                    [
                        self._gate_keys(destination).prefix,
                        _ms(now),
                        _ms(now + lease),
                        destination,
                        policy.concurrency if policy else 0,
                        0 if policy and not policy.circuit else 1,
                        *(f"{job.id}|{job.lease}" for job in group),
                    ]
                )
            )
            turned = [(job, int(w)) for job, w in zip(group, waits, strict=True) if int(w)]
            if turned:
                self._held[destination] = min(w for _, w in turned)
            return turned

        turned = [
            pair
            for pairs in await asyncio.gather(*(gate(d, g) for d, g in by_destination.items()))
            for pair in pairs
        ]
        if not turned:
            return jobs
        back: dict[int, list[Any]] = defaultdict(list)
        for job, due in turned:
            back[job.partition] += [job.id, job.lease, due]
        prefixes = [keys.prefix for keys in self._partition_keys]
        await asyncio.gather(
            *(self._call(self._give_back([prefixes[i], _ms(now), *a])) for i, a in back.items())
        )
        away = {job.id for job, _ in turned}
        return [job for job in jobs if job.id not in away]

    async def _finish_job(
        self,
        job: Job,
        outcome: str,
        now: float,
        attempt: Any,
        extra: Any,
        **options: Any,
    ) -> Recorded:
        with scope(job.partition):
            recorded = await super()._finish_job(job, outcome, now, attempt, extra, **options)
        if recorded.jobs:  # handed over in the job's partition: its deliveries' gates next
            lease = options["handoff"].lease
            recorded = replace(
                recorded, jobs=tuple(await self._pass_gates(list(recorded.jobs), now, lease))
            )
        if not job.destination:
            return recorded
        policy = self.endpoints.get(job.destination, _NO_POLICY)
        kept = recorded.kept
        changed = await self._call(
            self._gate_done(
                [
                    self._gate_keys(job.destination).prefix,
                    _ms(now),
                    job.destination,
                    f"{job.id}|{job.lease}",
                    (options.get("health") or "") if kept else "",
                    (options.get("disable") or "") if kept else "",
                    _ms(policy.window),
                    policy.failure_ratio,
                    policy.min_requests,
                    _ms(policy.open_for),
                    1 if policy.circuit else 0,
                ]
            )
        )
        return Recorded(kept, _text(changed) or None, recorded.jobs, recorded.left)

    async def enqueue(self, jobs: list[NewJob], now: float) -> int:
        if current() is not None:
            return await super().enqueue(jobs, now)
        groups: dict[int, list[NewJob]] = defaultdict(list)
        for job in jobs:
            groups[partition_of(job.order_key or job.key or job.id, self.partitions)].append(job)
        done = await asyncio.gather(
            *(self._in(i, lambda g=g: RedisStore.enqueue(self, g, now)) for i, g in groups.items())
        )
        return sum(done)

    async def next_due(self) -> float | None:
        found = [d for d in await self._everywhere(lambda: RedisStore.next_due(self)) if d]
        return min(found) if found else None

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
        return await self._in(
            self._home(uid),
            lambda: RedisStore.record_booking(
                self, uid, event_id, snapshot, new_version, refs, now, occurred_at
            ),
        )

    async def get_booking(self, uid: str) -> StoredBooking | None:
        return await self._first(lambda: RedisStore.get_booking(self, uid))

    async def booking_by_ref(self, ref: str) -> StoredBooking | None:
        return await self._first(lambda: RedisStore.booking_by_ref(self, ref))

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
        return await self._in(
            self._home(key),
            lambda: RedisStore.pair(self, key, role, event, alone_ok, fallback, now, half),
        )

    async def pair_timeout(self, key: str, now: float, timer: str = "") -> dict[str, Any] | None:
        return await self._in(
            self._home(key), lambda: RedisStore.pair_timeout(self, key, now, timer)
        )

    async def scheduled(self, key: str) -> JobInfo | None:
        return await self._first(lambda: RedisStore.scheduled(self, key))

    # --- connector memory --------------------------------------------------------------

    async def remember(self, scope: str, key: str, value: str) -> None:
        await self._in(self._home(key), lambda: RedisStore.remember(self, scope, key, value))

    async def recall(self, scope: str, key: str) -> str | None:
        return await self._in(self._home(key), lambda: RedisStore.recall(self, scope, key))

    async def forget(self, scope: str, key: str) -> None:
        await self._in(self._home(key), lambda: RedisStore.forget(self, scope, key))

    # --- dead letters and replay -------------------------------------------------------

    async def replay(self, job_id: str, now: float) -> bool:
        index = await self._where(lambda keys: keys.job(job_id))
        if index is None:
            return False
        return await self._in(index, lambda: RedisStore.replay(self, job_id, now))

    async def redispatch(self, event_id: str, job_id: str, now: float, resend: bool) -> Redispatch:
        index = await self._where(lambda keys: keys.event(event_id))
        if index is None:
            return Redispatch(job_id=None, created=False)
        return await self._in(
            index, lambda: RedisStore.redispatch(self, event_id, job_id, now, resend)
        )

    async def sent_signatures(self, event_id: str) -> set[str]:
        if current() is not None:
            return await super().sent_signatures(event_id)
        found: set[str] = set()
        for part in await self._everywhere(lambda: RedisStore.sent_signatures(self, event_id)):
            found |= part
        return found

    # --- read side ---------------------------------------------------------------------

    async def get_job(self, job_id: str) -> JobInfo | None:
        return await self._first(lambda: RedisStore.get_job(self, job_id))

    # dead_letters, counts, delivery_rates and the listings merge every partition's
    # indexes through _partitions(); the records they name are read below.

    def _partitions(self) -> list[Keys]:
        return [self.keys] if current() is not None else list(self._partition_keys)

    async def _jobs(self, ids: list[str]) -> list[JobInfo]:
        if current() is not None:
            return await super()._jobs(ids)
        parts = await self._everywhere(lambda: RedisStore._jobs(self, ids))
        found = {job.id: job for part in parts for job in part}
        return [found[i] for i in ids if i in found]

    async def _event_records(self, ids: list[str]) -> list[EventRecord | None]:
        if current() is not None or not ids:
            return await super()._event_records(ids)
        parts = await self._everywhere(lambda: RedisStore._event_records(self, ids))
        return [next((part[i] for part in parts if part[i]), None) for i in range(len(ids))]

    async def event_jobs(self, event_id: str) -> list[JobInfo]:
        return await self._first(lambda: RedisStore.event_jobs(self, event_id)) or []

    async def booking_events(self, uid: str) -> list[EventRecord]:
        return await self._first(lambda: RedisStore.booking_events(self, uid)) or []

    async def waits_behind(self, job: JobInfo) -> str | None:
        return await self._first(lambda: RedisStore.waits_behind(self, job))

    async def destination_states(self, names: list[str]) -> list[DestinationState]:
        states = await super().destination_states(names)
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.zcard(self._gate_keys(name).running(name))
            running = await self._call(pipe.execute())
        return [replace(s, in_flight=int(n)) for s, n in zip(states, running, strict=True)]

    async def stats(self) -> QueueStats:
        parts = await self._everywhere(lambda: RedisStore.stats(self))
        return QueueStats(
            due=sum(p.due for p in parts),
            in_flight=sum(p.in_flight for p in parts),
            dead=sum(p.dead for p in parts),
        )
