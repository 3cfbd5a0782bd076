"""The canonical event: its checked-in schema, and what Calendly payloads become."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from connectors.calendly import Calendly, CalendlyConfig
from hub.bookings import Bookings
from hub.connector import NormalizeContext
from hub.model import json_schema
from hub.schemas import SchemaValidator
from hub.store.redis import RedisStore
from tests.conftest import REDIS_URL, fixture_json

ROOT = Path(__file__).parent.parent
RECEIVED = datetime(2026, 11, 20, 8, 16, tzinfo=UTC)
SOURCE = Calendly(
    "calendly", CalendlyConfig(connector="calendly", signing_key="calendly-test-signing-key")
)


@pytest.fixture
async def normalize(redis_prefix):
    """The Calendly connector's normalize, with the hub's booking state in Redis."""
    store = RedisStore.from_url(REDIS_URL, prefix=redis_prefix)
    context = NormalizeContext(
        "calendly", "evt_TEST", RECEIVED, Bookings(store, RECEIVED.timestamp())
    )

    async def run(payload):
        return await SOURCE.normalize(payload, context)

    yield run
    await store.close()


def test_checked_in_schema_matches_the_models() -> None:
    checked_in = json.loads((ROOT / "schemas" / "booking-event.json").read_text())
    assert checked_in == json_schema(), "regenerate: hub schema > schemas/booking-event.json"


async def test_invitee_created_is_a_confirmed_booking_valid_against_the_schema(normalize) -> None:
    [event] = await normalize(fixture_json("calendly/invitee_created.json"))
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


async def test_invitee_canceled_is_a_cancelled_booking_with_its_reason(normalize) -> None:
    [event] = await normalize(fixture_json("calendly/invitee_canceled.json"))
    assert event.type == "booking_cancelled"
    assert event.booking.status == "cancelled"
    assert event.booking.cancellation.reason == "I am travelling that week"
    assert event.booking.cancellation.canceler_type == "invitee"


async def test_the_cancelled_half_of_a_reschedule_is_not_a_cancellation(normalize) -> None:
    payload = fixture_json("calendly/invitee_canceled.json")
    payload["payload"]["rescheduled"] = True
    payload["payload"]["new_invitee"] = "https://api.calendly.com/scheduled_events/E2/invitees/I2"
    assert await normalize(payload) == []  # it waits for its partner


@pytest.mark.parametrize(
    ("name", "kind"),
    [("invitee_no_show.created", "marked_no_show"), ("invitee_no_show.deleted", "no_show_removed")],
)
async def test_no_shows(normalize, name, kind) -> None:
    payload = copy.deepcopy(fixture_json("calendly/invitee_created.json"))
    payload["event"] = name
    [event] = await normalize(payload)
    assert event.type == kind
    assert event.booking.no_show is (kind == "marked_no_show")


async def test_other_calendly_events_normalize_to_nothing(normalize) -> None:
    payload = {
        "event": "routing_form_submission.created",
        "created_at": "2026-11-20T08:00:00Z",
        "payload": {},
    }
    assert await normalize(payload) == []
