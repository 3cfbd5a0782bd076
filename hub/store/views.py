"""What the store's read side answers: the records the admin API, the console and the CLI
show. Plain data; the service layer (``hub.admin.service``) turns them into answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = [
    "Counts",
    "EventFilter",
    "EventNote",
    "EventRecord",
    "JobFilter",
    "Page",
]

T = TypeVar("T")

JOB_STATES = ("due", "blocked", "running", "retry", "done", "dead")
JOB_KINDS = ("dispatch", "deliver", "timer")


@dataclass(frozen=True)
class EventNote:
    """What dispatching an inbound event found, kept with it for listings: the canonical
    types, the booking, the client's email (the store keeps only a keyed digest) and the
    provider's name for the event."""

    types: list[str]
    booking: str = ""
    email: str = ""
    name: str = ""


@dataclass(frozen=True)
class EventRecord:
    """An inbound event as listed: ``jobs`` counts its jobs by state."""

    id: str
    source: str
    received_at: float
    name: str | None
    types: list[str]
    booking: str | None
    jobs: dict[str, int] = field(default_factory=dict)
    email_digest: str = ""  # the keyed digest the store keeps, for filtering only


@dataclass(frozen=True)
class EventFilter:
    source: str | None = None
    type: str | None = None
    booking: str | None = None
    email: str | None = None
    since: float | None = None
    until: float | None = None


@dataclass(frozen=True)
class JobFilter:
    state: str | None = None
    kind: str | None = None
    destination: str | None = None
    since: float | None = None


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing, newest first; ``next_cursor`` continues it (None: the end)."""

    items: list[T]
    next_cursor: str | None


@dataclass(frozen=True)
class Counts:
    """Counts the store keeps as it goes: jobs by (state, kind), jobs of each destination
    by state, and when the oldest due job became due (None: none is due)."""

    jobs: dict[tuple[str, str], int]
    destinations: dict[str, dict[str, int]]
    oldest_due: float | None
