"""The canonical booking event: what every source becomes and every destination reads.

Event types use the NeetoCal trigger vocabulary, which ops teams already think in. Its
JSON Schema is generated from these models into ``schemas/booking-event.json``
(``hub schema > schemas/booking-event.json``); a test fails when the two drift.
"""

from __future__ import annotations

import functools
import hashlib
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

__all__ = [
    "EVENT_TYPES",
    "NOTIFICATION_TYPES",
    "OUTCOMES",
    "Answer",
    "Booking",
    "BookingEvent",
    "Cancellation",
    "EventType",
    "InviteReply",
    "Location",
    "Meeting",
    "Outcome",
    "Person",
    "Proposal",
    "booking_uuid",
    "utc_iso",
]

EventType = Literal[
    "booking_confirmed",
    "booking_rescheduled",
    "booking_cancelled",
    "marked_no_show",
    "no_show_removed",
    "before_meeting_starts",
    "after_meeting_ends",
    "meeting_outcome_changed",
    "invite_replied",
    "calendar_changed",
    "channel_verified",
    "profile_disconnected",
    "provider_notification",
]
EVENT_TYPES: tuple[str, ...] = EventType.__args__
# Events that are about a calendar or a channel, not a booking: they carry none.
NOTIFICATION_TYPES = (
    "calendar_changed",
    "channel_verified",
    "profile_disconnected",
    "provider_notification",
)

# Namespace of the stable UUIDs derived from provider identifiers (booking uid, people).
HUB_NAMESPACE = uuid.UUID("5b0c7a8e-3f43-4c1e-9a57-3f2f1d7f6b10")
_NAMESPACE_BYTES = HUB_NAMESPACE.bytes
# The first hex digit of the UUID's variant octet (RFC 4122: 10xx) for each it replaces.
_VARIANT = {f"{n:x}": f"{n & 0x3 | 0x8:x}" for n in range(16)}


@functools.lru_cache(maxsize=4096)  # a message names its client and host: often the same
def booking_uuid(key: str) -> str:
    """A UUID that is the same every time for the same provider identifier: the text of
    ``uuid.uuid5(HUB_NAMESPACE, key)``, written straight from the SHA-1 digest."""
    h = hashlib.sha1(_NAMESPACE_BYTES + bytes(key, "utf-8")).hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Person(_Model):
    """A client, host or guest."""

    id: str | None = Field(None, description="The provider's identifier of the person")
    name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    time_zone: str | None = Field(None, description="IANA time zone, e.g. Europe/Zurich")
    phone: str | None = None


class Meeting(_Model):
    """The kind of meeting booked (Calendly: event type)."""

    id: str | None = None
    name: str | None = None
    scheduling_url: str | None = None


class Location(_Model):
    type: str | None = Field(None, description="physical, video, phone, … as the provider says")
    value: str | None = Field(None, description="Address, join URL or phone number")
    details: str | None = None


class Answer(_Model):
    question: str
    answer: str | None = None
    position: int | None = None


class Cancellation(_Model):
    reason: str | None = None
    by: str | None = Field(None, description="Who cancelled: a name, URI or role")
    canceler_type: str | None = Field(None, description="host or invitee")
    at: AwareDatetime | None = None


class Booking(_Model):
    """One booking, as it stands after the event."""

    id: str = Field(description="Stable id of the booking across reschedules")
    uid: str = Field(description="Stable UUID of the booking; the iCalendar UID is built on it")
    provider_ref: str | None = Field(
        None, description="The provider's own reference of this version of the booking"
    )
    status: Literal["active", "cancelled"] = "active"
    meeting: Meeting = Meeting()
    start: AwareDatetime
    end: AwareDatetime
    time_zone: str | None = Field(None, description="The client's IANA time zone")
    location: Location | None = None
    client: Person
    host: Person | None = None
    guests: list[Person] = []
    answers: list[Answer] = []
    cancellation: Cancellation | None = None
    urls: dict[str, str] = Field(
        default_factory=dict, description="Links the provider gives: cancel, reschedule, …"
    )
    notes: str | None = None
    no_show: bool = Field(False, description="The client was marked as not having come")
    sequence: int = Field(
        0, ge=0, description="Version of the booking: one up for each reschedule or cancellation"
    )


class Proposal(_Model):
    """A time a recipient proposed instead."""

    start: AwareDatetime
    start_time_zone: str | None = None
    end: AwareDatetime
    end_time_zone: str | None = None


class InviteReply(_Model):
    """A recipient's answer to a calendar invitation."""

    invite_id: str = Field(description="The provider's id of the invitation")
    email: str | None = None
    status: Literal["pending", "accepted", "tentative", "declined"]
    comment: str | None = None
    proposal: Proposal | None = None


OUTCOMES = ("held", "no_show", "follow_up", "won", "lost")


class Outcome(_Model):
    """How a meeting went, as an operator recorded it (``meeting_outcome_changed``)."""

    value: Literal["held", "no_show", "follow_up", "won", "lost"] = Field(
        description="held: it took place; no_show: the client did not come; follow_up: "
        "another meeting is needed; won / lost: the business outcome"
    )
    note: str | None = Field(None, description="The operator's note")
    by: str | None = Field(None, description="Name of the admin token that recorded it")


class BookingEvent(_Model):
    """Something that happened to a booking, in the hub's own words."""

    id: str = Field(description="Unique id of this canonical event")
    type: EventType
    source: str = Field(description="Name of the source in hub.yaml")
    inbound_event_id: str = Field(description="Id of the accepted webhook it came from")
    occurred_at: AwareDatetime = Field(description="When the provider says it happened")
    received_at: AwareDatetime = Field(description="When the hub accepted the webhook")
    booking: Booking | None = Field(
        None, description="The booking; none for invite replies and calendar notifications"
    )
    original: Booking | None = Field(None, description="The booking before a reschedule")
    reply: InviteReply | None = Field(None, description="The answer, for invite_replied")
    outcome: Outcome | None = Field(None, description="The outcome, for meeting_outcome_changed")
    raw: dict[str, Any] = Field(default_factory=dict, description="The provider's payload")

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def with_booking(self, **changes: Any) -> BookingEvent:
        """This event with its booking changed."""
        assert self.booking is not None
        return self.model_copy(update={"booking": self.booking.model_copy(update=changes)})

    @property
    def subject(self) -> str:
        """What the event is about: its booking, or its invitation, or itself. Messages
        about one subject reach a destination in order."""
        if self.booking is not None:
            return self.booking.id
        if self.reply is not None:
            return f"invite:{self.reply.invite_id}"
        return self.id


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a canonical event, as checked in under ``schemas/``."""
    schema = BookingEvent.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://hub.invalid/schemas/booking-event.json"
    return schema


def utc_iso(moment: datetime) -> str:
    """``2021-03-30T18:05:00+00:00``: ISO 8601 in UTC with an explicit offset."""
    return moment.astimezone(UTC).isoformat()
