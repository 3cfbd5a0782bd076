"""The store boundary: everything durable goes through the ``Store`` protocol.

One queue serves every kind of work. A job becomes due at a time (the due index); a worker
claims it with a lease (the in-flight index, scored by lease expiry); it then completes,
is retried at a later time, or becomes a dead letter. A lease that expires makes the job
due again: that is how the work of a crashed worker is recovered. Each claim carries a
fresh lease token, and only the holder of the current token can complete the job, so a
worker that lost its lease cannot overwrite the work of the one that took over.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

__all__ = [
    "Accepted",
    "Attempt",
    "InboundEvent",
    "Job",
    "JobInfo",
    "NewJob",
    "QueueStats",
    "Store",
    "open_store",
]

JobKind = Literal["dispatch", "deliver"]


@dataclass(frozen=True)
class Accepted:
    id: str
    duplicate: bool


@dataclass(frozen=True)
class InboundEvent:
    id: str
    source: str
    received_at: float
    body: bytes


@dataclass(frozen=True)
class NewJob:
    """A job to enqueue: due at ``due`` (epoch seconds)."""

    id: str
    kind: JobKind
    payload: dict[str, Any]
    due: float
    destination: str | None = None
    event_id: str | None = None


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
    state: Literal["due", "running", "retry", "done", "dead"]
    payload: dict[str, Any]
    attempts: list[dict[str, Any]]
    destination: str | None
    event_id: str | None
    due_at: float | None
    reason: str | None = None


@dataclass(frozen=True)
class QueueStats:
    due: int
    in_flight: int
    dead: int


class Store(Protocol):
    async def ping(self) -> None:
        """Raise StoreUnavailable unless the store answers."""

    async def close(self) -> None: ...

    # intake
    async def accept(
        self,
        source: str,
        dedup_key: str,
        body: bytes,
        received_at: float,
        event_id: str,
        dispatch_job_id: str,
    ) -> Accepted:
        """Store an inbound webhook and its dispatch job in one atomic step, unless a webhook
        with the same ``(source, dedup_key)`` was accepted within the dedup window: then
        return that one's id with ``duplicate=True`` and store nothing."""

    async def get_event(self, event_id: str) -> InboundEvent | None: ...

    # the queue
    async def claim(self, now: float, lease: float, limit: int) -> list[Job]:
        """Make expired leases due again, then claim up to ``limit`` due jobs for
        ``lease`` seconds."""

    async def complete(
        self, job: Job, attempt: Attempt, now: float, spawn: list[NewJob] | None = None
    ) -> bool:
        """Mark ``job`` done and enqueue ``spawn`` atomically. False if the lease was lost."""

    async def retry(self, job: Job, attempt: Attempt, due: float) -> bool:
        """Record the attempt and make ``job`` due again at ``due``."""

    async def bury(self, job: Job, attempt: Attempt, now: float, reason: str) -> bool:
        """Record the attempt and move ``job`` to the dead letters."""

    async def release(self, job: Job, now: float) -> bool:
        """Give a claimed job back without counting the claim as an attempt."""

    async def next_due(self) -> float | None:
        """When the earliest due job is due, or None if none is."""

    # read side
    async def get_job(self, job_id: str) -> JobInfo | None: ...

    async def dead_letters(self, limit: int = 100) -> list[str]: ...

    async def stats(self) -> QueueStats: ...


def open_store(url: str, *, prefix: str, dedup_window: float, retention: float) -> Store:
    """The store for a URL. Only Redis is implemented; its URL schemes are redis://,
    rediss:// and unix://."""
    from hub.store.redis import RedisStore

    return RedisStore.from_url(url, prefix=prefix, dedup_window=dedup_window, retention=retention)
