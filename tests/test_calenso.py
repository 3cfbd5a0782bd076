"""Golden tests of the ten Calenso events the Inxmail connector sends.

The expected shapes restate the Calenso→Inxmail event documentation: every event has
customer, worker and appointment; the rebooking events add original_appointment; the
partner's cancellation marks the appointment deleted; the confirmation, reminder,
rebooking and notification-before events attach Termin.ics, the others attach nothing.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import icalendar
import pytest
import vobject

from connectors.inxmail import EVENTS, InxmailConfig, build_event
from hub.model import (
    Booking,
    BookingEvent,
    Cancellation,
    Meeting,
    Person,
    booking_uuid,
)
from hub.schemas import validator

CUSTOMER_KEYS = {"id", "uuid", "prename", "lastname", "email", "language", "salutation"}
WORKER_KEYS = {"id", "uuid", "full_name", "prename", "lastname", "email"}
APPOINTMENT_KEYS = {
    "id",
    "start",
    "end",
    "title",
    "description",
    "uuid",
    "remarks",
    "url",
    "rebook_reason",
    "cancellation_reason",
}
# event → (event type it is sent for, has original_appointment, has deleted, has Termin.ics)
GOLDEN = {
    "calenso.booking.inform-customer": ("booking_confirmed", False, False, True),
    "calenso.booking.inform-partner": ("booking_confirmed", False, False, True),
    "calenso.booking.remind-customer": ("before_meeting_starts", False, False, True),
    "calenso.booking.rebook.inform-customer": ("booking_rescheduled", True, False, True),
    "calenso.booking.rebook.inform-partner": ("booking_rescheduled", True, False, True),
    "calenso.booking.cancel.inform-customer": ("booking_cancelled", False, False, False),
    "calenso.booking.cancel.inform-partner": ("booking_cancelled", False, True, False),
    "calenso.smart-action.survey-after-appointment.inform-customer": (
        "after_meeting_ends",
        False,
        False,
        False,
    ),
    "calenso.smart-action.notification-before-appointment.inform-customer": (
        "before_meeting_starts",
        False,
        False,
        True,
    ),
    "calenso.smart-action.thank-you-after-appointment.inform-customer": (
        "after_meeting_ends",
        False,
        False,
        False,
    ),
}
CONFIG = InxmailConfig(
    connector="inxmail",
    api_url="https://acme.api.inxmail-commerce.com/api-service/v1",
    api_id="id",
    api_secret="secret",
)
NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC).timestamp()


def canonical(kind: str) -> BookingEvent:
    client = Person(
        name="Nora Weber",
        first_name="Nora",
        last_name="Weber",
        email="nora.weber@example.org",
        time_zone="Europe/Berlin",
    )
    host = Person(id="u-1", name="Jan Frei", email="jan.frei@example.org")
    booking = Booking(
        id="b-1",
        uid=booking_uuid("b-1"),
        meeting=Meeting(name="Beratung"),
        start=datetime(2026, 12, 1, 9, tzinfo=UTC),
        end=datetime(2026, 12, 1, 10, tzinfo=UTC),
        client=client,
        host=host,
        sequence=1 if kind == "booking_rescheduled" else 0,
        status="cancelled" if kind == "booking_cancelled" else "active",
        cancellation=Cancellation(reason="Krank", at=datetime(2026, 11, 30, 8, tzinfo=UTC))
        if kind == "booking_cancelled"
        else None,
    )
    original = None
    if kind == "booking_rescheduled":
        original = booking.model_copy(
            update={
                "start": datetime(2026, 11, 28, 9, tzinfo=UTC),
                "end": datetime(2026, 11, 28, 10, tzinfo=UTC),
                "cancellation": Cancellation(reason="Arzttermin"),
                "sequence": 0,
            }
        )
    moment = datetime(2026, 11, 20, 9, tzinfo=UTC)
    return BookingEvent(
        id="evt.0",
        type=kind,
        source="calendly",
        inbound_event_id="evt",
        occurred_at=moment,
        received_at=moment,
        booking=booking,
        original=original,
    )


def test_the_golden_table_covers_the_ten_events() -> None:
    assert set(GOLDEN) == set(EVENTS)
    assert len(EVENTS) == 10


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_calenso_event(name) -> None:
    kind, has_original, has_deleted, has_ics = GOLDEN[name]
    event = canonical(kind)
    body = build_event(name, event, CONFIG, "job_1", NOW)
    validator("inxmail/event.json").check(body)

    assert body["event"] == name  # the heading's name, whatever the examples say
    assert body["transactionId"] == "job_1"
    payload = body["payload"]
    assert set(payload["customer"]) == CUSTOMER_KEYS
    assert set(payload["worker"]) == WORKER_KEYS
    expected = APPOINTMENT_KEYS | ({"deleted"} if has_deleted else set())
    assert set(payload["appointment"]) == expected
    assert ("original_appointment" in payload) is has_original
    assert ("attachments" in body) is has_ics

    appointment = payload["appointment"]
    assert appointment["uuid"] == booking_uuid("b-1")  # the same in every event of a booking
    assert appointment["start"] == "2026-12-01T09:00:00+00:00"
    assert payload["customer"]["email"] == "nora.weber@example.org"
    assert payload["worker"]["full_name"] == "Jan Frei"
    if has_original:
        original = payload["original_appointment"]
        assert original["uuid"] == appointment["uuid"]
        assert original["start"] == "2026-11-28T09:00:00+00:00"
        assert appointment["rebook_reason"] == "Arzttermin"
    if kind == "booking_cancelled":
        assert appointment["cancellation_reason"] == "Krank"
    if has_deleted:
        assert appointment["deleted"] == "2026-11-30T08:00:00+00:00"
    if has_ics:
        [attachment] = body["attachments"]
        assert attachment["filename"] == "Termin.ics"
        assert attachment["content-type"] == "text/calendar"
        ics = base64.b64decode(attachment["content"])
        calendar = icalendar.Calendar.from_ical(ics)
        [vevent] = calendar.walk("VEVENT")
        assert vevent.decoded("DTSTART") == event.booking.start
        assert vevent["SEQUENCE"] == event.booking.sequence
        independent = vobject.readOne(ics.decode())
        assert independent.vevent.uid.value == f"{booking_uuid('b-1')}@hub"
        assert independent.vevent.dtend.value == event.booking.end
        assert [a.value for a in independent.vevent.attendee_list] == [
            "mailto:nora.weber@example.org"
        ]


def test_expiring_and_expired_secrets_are_warned_about() -> None:
    from connectors.inxmail import Inxmail

    config = CONFIG.model_copy(update={"secret_expires": datetime(2026, 12, 1).date()})
    assert Inxmail.check(config, datetime(2026, 11, 10, tzinfo=UTC).timestamp()) == []
    [soon] = Inxmail.check(config, datetime(2026, 11, 20, tzinfo=UTC).timestamp())
    assert "expires on 2026-12-01" in soon
    [gone] = Inxmail.check(config, datetime(2026, 12, 2, tzinfo=UTC).timestamp())
    assert "expired on 2026-12-01" in gone
    later = config.model_copy(update={"warn_before_expiry": timedelta(days=30)})
    assert Inxmail.check(later, datetime(2026, 11, 10, tzinfo=UTC).timestamp())
