"""The admin API's request and response models. The handlers validate and answer with
them, and the OpenAPI document is generated from them: one source for both."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from hub.model import EventType

__all__ = [
    "AttemptView",
    "BookingView",
    "Count",
    "DeadLetterQuery",
    "DeadReplay",
    "DestinationView",
    "ErrorBody",
    "EventDetail",
    "EventPage",
    "EventQuery",
    "EventView",
    "JobPage",
    "JobQuery",
    "JobView",
    "OutcomeIn",
    "Recorded",
    "ReplayEvent",
    "Replayed",
    "StatsView",
    "TimelineEntry",
    "moment",
]

JobState = Literal["due", "blocked", "running", "retry", "done", "dead"]
JobKind = Literal["dispatch", "deliver", "timer"]
_NAME = r"^[A-Za-z0-9_.:-]{1,128}$"


def moment(seconds: float | None) -> datetime | None:
    """An epoch time as an aware UTC datetime."""
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


# --- requests -------------------------------------------------------------------------


class EventQuery(_In):
    source: str | None = Field(None, pattern=_NAME, description="Name of a source")
    type: EventType | None = Field(None, description="A canonical event type it became")
    booking: str | None = Field(None, pattern=_NAME, description="A booking's uid")
    email: str | None = Field(
        None, min_length=3, max_length=320, description="The client's email, exact match"
    )
    since: AwareDatetime | None = Field(None, description="Received at or after (ISO 8601)")
    until: AwareDatetime | None = Field(None, description="Received at or before (ISO 8601)")
    cursor: str | None = Field(None, max_length=200, description="next_cursor of a page")
    limit: int = Field(50, ge=1, le=200)

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and ("@" not in value or not value.isprintable()):
            raise ValueError("expected an email address")
        return value


class JobQuery(_In):
    state: JobState | None = None
    kind: JobKind | None = None
    destination: str | None = Field(None, pattern=_NAME, description="Name of a destination")
    cursor: str | None = Field(None, max_length=200)
    limit: int = Field(50, ge=1, le=200)


class DeadLetterQuery(_In):
    destination: str | None = Field(None, pattern=_NAME)
    since: AwareDatetime | None = Field(None, description="Given up at or after (ISO 8601)")
    limit: int = Field(100, ge=1, le=1000)


class ReplayEvent(_In):
    resend: bool = Field(
        False, description="Send to every route again, not only to routes it was not sent to"
    )


class DeadReplay(_In):
    destination: str | None = Field(None, pattern=_NAME)
    since: AwareDatetime | None = None


class OutcomeIn(_In):
    outcome: Literal["held", "no_show", "follow_up", "won", "lost"]
    note: str | None = Field(None, max_length=2000)


# --- answers --------------------------------------------------------------------------


class ErrorBody(_Out):
    error: str = Field(description="A stable error name: bad_request, not_found, …")
    detail: str
    parameter: str | None = Field(None, description="The parameter or field at fault")


class AttemptView(_Out):
    number: int | None = None
    started_at: datetime | None = None
    duration_ms: float | None = None
    outcome: str
    status: int | None = None
    error: str | None = None
    response: str | None = None


class JobView(_Out):
    id: str
    kind: JobKind
    state: JobState
    destination: str | None = None
    route: str | None = None
    event_id: str | None = None
    booking: str | None = None
    due_at: datetime | None = None
    created_at: datetime
    finished_at: datetime | None = None
    reason: str | None = None
    waits_behind: str | None = Field(None, description="A blocked job: the job it waits for")
    attempts: list[AttemptView] = []
    message: dict[str, Any] | None = Field(None, description="What a delivery sends")


class EventView(_Out):
    id: str
    source: str
    received_at: datetime
    name: str | None = Field(None, description="The provider's name of the event")
    types: list[str] = Field(description="The canonical event types it became")
    booking: str | None = None
    jobs: dict[str, int] = Field(description="Its jobs, counted by state")


class EventPage(_Out):
    items: list[EventView]
    next_cursor: str | None = None


class EventDetail(EventView):
    payload: Any = Field(description="The provider's payload as received")
    canonical: list[dict[str, Any]] = Field(description="The canonical events it became")
    job_list: list[JobView] = Field(description="Every job it led to")


class JobPage(_Out):
    items: list[JobView]
    next_cursor: str | None = None


class TimelineEntry(_Out):
    at: datetime
    kind: Literal["event", "message", "trigger"]
    event_id: str | None = None
    types: list[str] = []
    name: str | None = None
    job_id: str | None = None
    destination: str | None = None
    route: str | None = None
    state: str | None = None
    local_time: str | None = Field(None, description="A trigger's instant in the booking's zone")


class BookingView(_Out):
    uid: str
    sequence: int
    snapshot: dict[str, Any]
    timeline: list[TimelineEntry]


class Replayed(_Out):
    id: str
    replayed: bool
    job_id: str | None = None
    detail: str


class Count(_Out):
    replayed: int


class Recorded(_Out):
    event_id: str
    outcome: str


class DestinationView(_Out):
    name: str
    connector: str
    state: Literal["closed", "open", "half_open", "disabled"]
    disabled: bool
    reason: str | None = None
    changed_at: datetime | None = None
    open_until: datetime | None = None
    in_flight: int
    due: int
    blocked: int
    dead: int
    last_success: datetime | None = None
    last_failure: datetime | None = None
    last_error: str | None = None


class RateView(_Out):
    minute: datetime
    done: int = 0
    retry: int = 0
    dead: int = 0


class StatsView(_Out):
    jobs: dict[str, dict[str, int]] = Field(description="Jobs by state, then by kind")
    oldest_due_seconds: float = Field(description="How long the oldest due job has waited")
    deliveries_per_minute: list[RateView] = Field(description="The last hour, oldest first")
