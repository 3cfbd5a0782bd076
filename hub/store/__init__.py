"""The store boundary: everything durable goes through the ``Store`` protocol.

One queue serves every kind of work. A job becomes due at a time (the due index); a worker
claims it with a lease (the in-flight index, scored by lease expiry); it then completes,
is retried at a later time, or becomes a dead letter. A lease that expires makes the job
due again: that is how the work of a crashed worker is recovered. Each claim carries a
fresh lease token, and only the holder of the current token can complete the job, so a
worker that lost its lease cannot overwrite the work of the one that took over.

A job may have an **ordering key**. Jobs of one key run one at a time, in the order they
were enqueued: while the oldest waits for a retry, the others wait behind it (their
state is ``blocked``). When it is done or dead, the next one becomes due.

A worker with free slots may be **handed** the jobs a call makes due at once (``Handoff``):
the dispatch job of a webhook it accepts, the deliveries a dispatch it completes spawns,
the job its completion lets run next. They come back claimed, as a claim would have
claimed them (same lease, same gates), which saves the claim's round trip. A job is only
handed over when no job due before it waits, so a hand-over never jumps the queue.

Jobs of a **destination** pass two gates when claimed: its concurrency limit (jobs of it
in flight across all workers) and its circuit breaker. While the breaker is open, or the
destination is disabled, its jobs are put back to wait without using up an attempt.

On a Redis Cluster (or with ``partitions`` > 1) the keys are split into **partitions**
(``hub/store/partitions.py``, ``hub/store/partitioned.py``): everything of one booking in
one partition, the gates of each destination in a slot of their own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from hub.store.views import Counts, EventFilter, EventNote, EventRecord, JobFilter, Page

__all__ = [
    "Accepted",
    "Attempt",
    "DestinationState",
    "EndpointPolicy",
    "Handoff",
    "InboundEvent",
    "Job",
    "JobInfo",
    "NewJob",
    "Paired",
    "QueueStats",
    "Recorded",
    "Redispatch",
    "Store",
    "StoredBooking",
    "open_store",
]

JobKind = Literal["dispatch", "deliver", "timer"]
JobState = Literal["due", "blocked", "running", "retry", "done", "dead"]
Health = Literal["ok", "fail"]


@dataclass(frozen=True)
class Handoff:
    """A worker's room for jobs a store call makes due at once: up to ``room`` of them come
    back claimed for ``lease`` seconds."""

    room: int
    lease: float


@dataclass(frozen=True)
class Accepted:
    id: str
    duplicate: bool
    job: Job | None = None  # the dispatch job, claimed, when it was handed over


@dataclass(frozen=True)
class InboundEvent:
    id: str
    source: str
    received_at: float
    body: bytes


@dataclass(frozen=True)
class NewJob:
    """A job to enqueue: due at ``due`` (epoch seconds). ``signature`` names what it sends,
    so a replay of its event can tell what was sent before."""

    id: str
    kind: JobKind
    payload: dict[str, Any]
    due: float
    destination: str | None = None
    event_id: str | None = None
    order_key: str | None = None
    signature: str | None = None
    key: str | None = None  # enqueueing another job under the same key replaces this one


@dataclass(frozen=True)
class Job:
    """A claimed job. ``attempt`` counts claims, this one included; ``lease`` is the token
    that proves the claim."""

    id: str
    kind: JobKind
    payload: dict[str, Any]
    attempt: int
    lease: str
    destination: str | None
    event_id: str | None
    created_at: float
    partition: int = 0  # where its keys are (hub/store/partitions.py)


@dataclass(frozen=True)
class Attempt:
    """What one attempt did, kept with the job."""

    number: int
    started_at: float
    duration_ms: float
    outcome: Literal["done", "retry", "dead"]
    status: int | None = None
    error: str | None = None
    response: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class JobInfo:
    """The read side of a job: where it stands and what its attempts did."""

    id: str
    kind: JobKind
    state: JobState
    payload: dict[str, Any]
    attempts: list[dict[str, Any]]
    destination: str | None
    event_id: str | None
    due_at: float | None
    created_at: float
    finished_at: float | None = None
    reason: str | None = None
    order_key: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class QueueStats:
    due: int
    in_flight: int
    dead: int


@dataclass(frozen=True)
class EndpointPolicy:
    """How much a destination is sent at once, and when its circuit breaker opens: after
    ``failure_ratio`` of at least ``min_requests`` attempts within ``window`` seconds
    failed; it stays open ``open_for`` seconds, then lets one probe through."""

    concurrency: int = 0  # 0: no limit
    circuit: bool = True
    window: float = 60.0
    failure_ratio: float = 0.5
    min_requests: int = 10
    open_for: float = 30.0


@dataclass(frozen=True)
class DestinationState:
    name: str
    state: Literal["closed", "open", "half_open", "disabled"]
    in_flight: int
    open_until: float | None
    window_ok: int
    window_failed: int
    reason: str | None
    changed_at: float | None
    last_ok: float | None = None
    last_fail: float | None = None
    last_fail_job: str | None = None  # the delivery that failed last


@dataclass(frozen=True)
class Recorded:
    """What recording an outcome did: ``kept`` is False when the lease was lost (another
    worker holds the job now); ``circuit`` is the destination's new circuit state, if the
    outcome changed it. True when kept."""

    kept: bool
    circuit: str | None = None
    jobs: tuple[Job, ...] = ()  # jobs handed over, claimed (see ``Handoff``)
    left: int = 0  # jobs it made due at once but left for a claim

    def __bool__(self) -> bool:
        return self.kept


@dataclass(frozen=True)
class StoredBooking:
    """A booking as it stands: the canonical booking (JSON) and its sequence."""

    snapshot: dict[str, Any]
    sequence: int


@dataclass(frozen=True)
class Paired:
    """The outcome of offering one half of a pair: ``paired`` (``partner`` is the other
    half's event), ``alone`` (this half may go on its own), ``wait`` (it waits for its
    partner, at most until the fallback job), ``done`` (the pair was handled already), or
    ``late`` (its partner waited in vain and went alone; ``partner`` is its event)."""

    status: Literal["paired", "alone", "wait", "done", "late"]
    partner: dict[str, Any] | None = None


@dataclass(frozen=True)
class Redispatch:
    job_id: str | None  # None: the event is no longer stored
    created: bool  # False: a replay of this event was pending already


class Store(Protocol):
    async def ping(self) -> None:
        """Raise StoreUnavailable unless the store answers."""

    async def close(self) -> None: ...

    async def settings(self) -> dict[str, str]:
        """The server settings that bear on durability (Redis: maxmemory-policy, appendonly)."""

    # intake
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
        """Store an inbound webhook and its dispatch job in one atomic step, unless a webhook
        with the same ``(source, dedup_key)`` was accepted within the dedup window (the
        store's, or ``dedup_window`` seconds for this source): then return that one's id
        with ``duplicate=True`` and store nothing. A partitioned store puts it in the
        partition of ``partition_key`` (default: ``order_key``), or where a route from that
        key points; ``linked_keys`` (references later webhooks of the same booking will
        carry) are routed to the same partition. With ``handoff``, the dispatch job comes
        back claimed if it is due at once."""

    async def get_event(self, event_id: str) -> InboundEvent | None: ...

    # the queue
    async def claim(self, now: float, lease: float, limit: int) -> list[Job]:
        """Make expired leases due again, then claim up to ``limit`` due jobs for
        ``lease`` seconds, passing each destination's gates."""

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
        """Mark ``job`` done, enqueue ``spawn`` and drop the jobs scheduled under the keys
        ``unschedule``, atomically. False if the lease was lost. ``health`` feeds the
        destination's circuit breaker; ``note`` (a dispatch) indexes its inbound event.
        With ``handoff``, the jobs this makes due at once (the next of the job's ordering
        key, then spawned ones) come back claimed, as many as there is room for."""

    async def retry(
        self,
        job: Job,
        attempt: Attempt,
        due: float,
        health: Health | None = None,
        now: float | None = None,
    ) -> Recorded:
        """Record the attempt and make ``job`` due again at ``due``. ``now`` (default: when
        the attempt started) is when the outcome is known, for the circuit breaker."""

    async def bury(
        self,
        job: Job,
        attempt: Attempt,
        now: float,
        reason: str,
        health: Health | None = None,
        disable: str | None = None,
    ) -> Recorded:
        """Record the attempt and move ``job`` to the dead letters; with ``disable``, also
        disable its destination for that reason."""

    async def release(self, job: Job, now: float) -> Recorded:
        """Give a claimed job back without counting the claim as an attempt."""

    async def enqueue(self, jobs: list[NewJob], now: float) -> int:
        """Put jobs on the queue (behind their ordering keys; replacing jobs of the same
        job key). Returns how many."""

    async def next_due(self) -> float | None:
        """When the earliest due job is due, or None if none is."""

    # bookings
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
        """Keep a booking's current state; ``refs`` (provider references) will find it.
        Returns its sequence as of this event (one higher for each new version: reschedule,
        cancellation) and whether the event is stale: older than the state it would
        replace (a replay of a past event), which it then leaves alone. Recording the
        same event twice changes nothing."""

    async def get_booking(self, uid: str) -> StoredBooking | None: ...

    async def booking_by_ref(self, ref: str) -> StoredBooking | None:
        """The booking a provider reference names, if the hub has seen it."""

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
        """Offer one half of a pair; ``half`` names it (default: its event's inbound id).
        The first half waits unless ``alone_ok``; the ``fallback`` timer job runs if its
        partner has not come by its due time. The same half offered again gets the same
        answer, so a retried job decides nothing twice."""

    async def pair_timeout(self, key: str, now: float, timer: str = "") -> dict[str, Any] | None:
        """The waiting half's event, if it is still alone (and now never will be paired);
        again to the same ``timer`` job asking twice."""

    async def scheduled(self, key: str) -> JobInfo | None:
        """The job scheduled under a key, if any."""

    # what destination connectors remember (an appointment id per booking, say)
    async def remember(self, scope: str, key: str, value: str) -> None: ...

    async def recall(self, scope: str, key: str) -> str | None: ...

    async def forget(self, scope: str, key: str) -> None: ...

    # dead letters and replay
    async def replay(self, job_id: str, now: float) -> bool:
        """Make a dead job due again with a fresh attempt budget. False unless it was dead."""

    async def redispatch(self, event_id: str, job_id: str, now: float, resend: bool) -> Redispatch:
        """Route a stored event again. Without ``resend``, messages sent for it before are
        not sent again. Idempotent: while one replay of the event is pending, another
        returns it."""

    async def sent_signatures(self, event_id: str) -> set[str]:
        """Signatures of every message enqueued for an event so far."""

    async def enable_destination(self, name: str, now: float) -> None:
        """Close a destination's breaker and lift a disable."""

    # read side
    async def get_job(self, job_id: str) -> JobInfo | None: ...

    async def dead_letters(
        self, limit: int = 100, destination: str | None = None, since: float | None = None
    ) -> list[JobInfo]: ...

    async def destination_states(self, names: list[str]) -> list[DestinationState]: ...

    async def stats(self) -> QueueStats: ...

    async def events(
        self, where: EventFilter, cursor: str | None = None, limit: int = 50
    ) -> Page[EventRecord]:
        """Inbound events, newest first; ValueError for a cursor it did not make."""

    async def event_record(self, event_id: str) -> EventRecord | None: ...

    async def event_jobs(self, event_id: str) -> list[JobInfo]:
        """Every job an inbound event led to, in the order they were made."""

    async def booking_events(self, uid: str) -> list[EventRecord]:
        """A booking's inbound events, oldest first."""

    async def jobs(
        self, where: JobFilter, cursor: str | None = None, limit: int = 50
    ) -> Page[JobInfo]:
        """Jobs, the latest to enter their state first."""

    async def waits_behind(self, job: JobInfo) -> str | None:
        """The job a blocked job waits behind."""

    async def dead_letter_ids(
        self, destination: str | None = None, since: float | None = None
    ) -> list[str]: ...

    async def counts(self, destinations: list[str], now: float) -> Counts:
        """Jobs by state and kind, by destination and state, and the oldest due time:
        counts the store keeps as it goes, never a scan."""

    async def delivery_rates(self, now: float, minutes: int = 60) -> list[dict[str, Any]]:
        """Deliveries per minute by outcome, oldest minute first."""


def open_store(
    url: str,
    *,
    prefix: str,
    dedup_window: float,
    retention: float,
    endpoints: Mapping[str, EndpointPolicy] | None = None,
    encryption_keys: list[str] | None = None,
    dead_letter_retention: float = 30 * 86400,
    booking_horizon: float = 0.0,
    partitions: int | None = None,
    min_replicas: int = 0,
    replica_timeout: float = 1.0,
) -> Store:
    """The store for a URL (see ``hub/store/connect.py`` for the schemes). On a Cluster, or
    with more than one partition, the partitioned store; else the plain one."""
    from hub.crypto import Cipher
    from hub.store.connect import client_for, parse_store_url
    from hub.store.partitioned import PartitionedStore
    from hub.store.redis import RedisStore

    cluster = parse_store_url(url).kind == "cluster"
    count = partitions or (16 if cluster else 1)
    options: dict[str, Any] = {
        "prefix": prefix,
        "dedup_window": dedup_window,
        "retention": retention,
        "endpoints": endpoints,
        "cipher": Cipher(encryption_keys) if encryption_keys else None,
        "dead_letter_retention": dead_letter_retention,
        "booking_horizon": booking_horizon,
        "min_replicas": min_replicas,
        "replica_timeout": replica_timeout,
        "lookup_keys": encryption_keys,
    }
    if cluster or count > 1:
        return PartitionedStore(client_for(url), partitions=count, **options)
    return RedisStore(client_for(url), **options)
