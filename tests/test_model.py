"""The canonical event: its checked-in schema, and what Calendly payloads become."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from connectors.calendly import Calendly, CalendlyConfig
from hub.connector import NormalizeContext
from hub.model import json_schema
from hub.schemas import SchemaValidator
from tests.conftest import fixture_json

ROOT = Path(__file__).parent.parent
CONTEXT = NormalizeContext("calendly", "evt_TEST", datetime(2026, 11, 20, 8, 16, tzinfo=UTC))
SOURCE = Calendly("calendly", CalendlyConfig(connector="calendly", signing_key="k"))


def test_checked_in_schema_matches_the_models() -> None:
    checked_in = json.loads((ROOT / "schemas" / "booking-event.json").read_text())
    assert checked_in == json_schema(), "regenerate: hub schema > schemas/booking-event.json"


def test_invitee_created_is_a_confirmed_booking_valid_against_the_schema() -> None:
    [event] = SOURCE.normalize(fixture_json("calendly/invitee_created.json"), CONTEXT)
    assert event.type == "booking_confirmed"
    assert event.id == "evt_TEST.0"
    booking = event.booking
    assert booking.status == "active"
    assert booking.meeting.name == "Consultation (45 min)"
    assert booking.client.time_zone == "Europe/Zurich"
    assert booking.host.email == "dr.brunner@example.org"
    assert [g.email for g in booking.guests] == ["jonas.keller@example.org"]
    assert booking.location.value.startswith("Praxis Seefeld")
    assert booking.urls["cancel"] == "https://calendly.com/cancellations/INV0000000042"
    SchemaValidator("booking-event", json_schema()).check(event.to_json())


def test_invitee_canceled_is_a_cancelled_booking_with_its_reason() -> None:
    [event] = SOURCE.normalize(fixture_json("calendly/invitee_canceled.json"), CONTEXT)
    assert event.type == "booking_cancelled"
    assert event.booking.status == "cancelled"
    assert event.booking.cancellation.reason == "I am travelling that week"
    assert event.booking.cancellation.canceler_type == "invitee"


def test_the_cancelled_half_of_a_reschedule_is_not_a_cancellation() -> None:
    payload = fixture_json("calendly/invitee_canceled.json")
    payload["payload"]["rescheduled"] = True
    payload["payload"]["new_invitee"] = "https://api.calendly.com/scheduled_events/E2/invitees/I2"
    assert SOURCE.normalize(payload, CONTEXT) == []


def test_the_new_half_of_a_reschedule_is_a_reschedule() -> None:
    payload = fixture_json("calendly/invitee_created.json")
    payload["payload"]["old_invitee"] = "https://api.calendly.com/scheduled_events/E1/invitees/I1"
    [event] = SOURCE.normalize(payload, CONTEXT)
    assert event.type == "booking_rescheduled"


@pytest.mark.parametrize("name", ["invitee_no_show.created", "routing_form_submission.created"])
def test_events_not_handled_yet_normalize_to_nothing(name) -> None:
    payload = copy.deepcopy(fixture_json("calendly/invitee_created.json"))
    payload["event"] = name
    assert SOURCE.normalize(payload, CONTEXT) == []
