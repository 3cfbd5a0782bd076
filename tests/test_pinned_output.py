"""Pinned bytes: what the hub makes of Calendly webhooks, byte for byte.

The canonical events a webhook becomes (as stored for their deliveries), the state of the
booking kept, the Inxmail bodies sent for them and the Termin.ics inside are compared with
files under ``fixtures/pinned/``. A change that alters one byte of them fails here; when
the change is meant, regenerate with ``HUB_PIN=write pytest tests/test_pinned_output.py``
and review the diff.
"""

from __future__ import annotations

import base64
import json
import os
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

import connectors.inxmail as inxmail
from connectors.calendly import Calendly, CalendlyConfig
from hub.bookings import Bookings
from hub.clock import ManualClock
from hub.connector import ConnectorContext, Delivery, DeliveryResult, NormalizeContext
from hub.ics import invitation
from hub.model import (
    Answer,
    Booking,
    BookingEvent,
    Cancellation,
    Location,
    Meeting,
    Person,
    booking_uuid,
)
from hub.posting import Poster
from hub.store import Paired, StoredBooking
from tests.conftest import fixture_json
from tests.test_scheduling import NEW, OLD, booking, post, reschedule

PINNED = Path(__file__).parent / "fixtures" / "pinned"
WRITE = os.environ.get("HUB_PIN") == "write"
_IDS = re.compile(r"\b(?:evt|job)_[0-9A-Z]{26}\b")


def _check(name: str, actual: dict[str, str]) -> None:
    path = PINNED / f"{name}.json"
    if WRITE:
        PINNED.mkdir(exist_ok=True)
        path.write_text(json.dumps(actual, indent=1, ensure_ascii=False) + "\n")
    expected = json.loads(path.read_text())
    assert list(actual) == list(expected)
    for key, value in actual.items():
        assert value == expected[key], key


def _stable_ids(texts: dict[str, str]) -> dict[str, str]:
    """Random ids (``evt_…``, ``job_…``) become ``<id1>``, ``<id2>``, … in order of
    appearance, so runs compare."""
    seen: dict[str, str] = {}

    def name(match: re.Match[str]) -> str:
        return seen.setdefault(match[0], f"<id{len(seen) + 1}>")

    return {_IDS.sub(name, key): _IDS.sub(name, value) for key, value in texts.items()}


def _split(body: bytes) -> tuple[str, str]:
    """The body as text with its attachment's base64 content replaced by a marker, and the
    attachment (Termin.ics) as text: together, every byte of the body."""
    attachments = orjson.loads(body).get("attachments")
    if not attachments:
        return body.decode(), ""
    content = attachments[0]["content"]
    assert body.count(content.encode()) == 1
    return body.decode().replace(content, "<Termin.ics>"), base64.b64decode(content).decode()


# --- through the hub: webhooks in, Inxmail bodies and stored events out ----------------

ROUTES = [
    {
        "name": "all",
        "on": ["booking_confirmed", "booking_rescheduled", "booking_cancelled"],
        "send": [{"to": "inxmail"}],
    },
    {
        "name": "templated",
        "on": "booking_confirmed",
        "send": [
            {
                "to": "inxmail",
                "event": "calenso.booking.remind-customer",
                "title": "{{ meeting.name }} with {{ host.name }}, {{ client.starts_at }}",
                "description": "{{ booking.ics_url }}",
            }
        ],
    },
    {
        "name": "reminder",
        "on": "before_meeting_starts",
        "offset": "24h",
        "send": [{"to": "inxmail"}],
    },
]


async def test_a_booking_confirmed_moved_reminded_and_cancelled(start_hub) -> None:
    hub = await start_hub(
        routes=ROUTES,
        server__ics_secret="ics-link-secret-0",
        server__public_url="https://hub.example.org",
    )
    texts: dict[str, str] = {}

    async def step(label: str) -> None:
        before = len(hub.sink.requests)
        await hub.worker.drain()
        sent = sorted(hub.sink.requests[before:], key=lambda r: orjson.loads(r.body)["event"])
        for request in sent:
            body = orjson.loads(request.body)
            key = f"{label} {body['event']}"
            job = await hub.store.get_job(body["transactionId"])
            texts[f"{key} body"], texts[f"{key} ics"] = _split(request.body)
            texts[f"{key} stored event"] = orjson.dumps(job.payload["event"]).decode()
            texts[f"{key} message"] = orjson.dumps(job.payload["message"]).decode()
        kept = await hub.store.get_booking(booking_uuid(OLD))
        texts[f"{label} booking kept"] = f"{kept.sequence} {orjson.dumps(kept.snapshot).decode()}"

    await post(hub, booking())
    await step("1 created")
    canceled, created = reschedule()
    await post(hub, canceled)
    await step("2 half")  # the cancelled half waits for its partner
    await post(hub, created)
    await step("2 rescheduled")
    hub.clock.advance(
        (datetime(2026, 12, 9, 14, 0, 1, tzinfo=UTC) - hub.clock.datetime()).total_seconds()
    )
    await step("3 reminded")
    cancellation = fixture_json("calendly/invitee_canceled.json")
    cancellation["payload"]["uri"] = NEW
    await post(hub, json.dumps(cancellation).encode())
    await step("4 cancelled")
    assert len(texts) == 8 * 4 + 5  # 3 + 2 + 1 + 2 messages, and the booking after each step
    _check("calendly_through_the_hub", _stable_ids(texts))


# --- normalize: the canonical events of every Calendly path ----------------------------


class _Store:
    """The two store calls normalize makes, kept in memory."""

    def __init__(self) -> None:
        self.bookings: dict[str, StoredBooking] = {}
        self.halves: dict[str, dict[str, Any]] = {}

    async def booking_by_ref(self, ref: str) -> StoredBooking | None:
        return self.bookings.get(ref)

    async def pair(self, key, role, event, alone_ok, fallback, now, half=""):
        halves = self.halves.setdefault(key, {})
        if halves.get("done"):
            return Paired("done")
        other = next((e for r, e in halves.items() if r != role), None)
        if other is not None:
            halves["done"] = True
            return Paired("paired", orjson.loads(orjson.dumps(other)))
        if alone_ok:
            halves["done"] = True
            return Paired("alone")
        halves[role] = event
        return Paired("wait")


async def test_every_calendly_path_makes_the_same_events() -> None:
    source = Calendly(
        "calendly", CalendlyConfig(connector="calendly", signing_key="calendly-test-signing-key")
    )
    store = _Store()
    received = datetime(2026, 11, 20, 8, 16, tzinfo=UTC)
    texts: dict[str, str] = {}

    async def run(label: str, payload: dict[str, Any]) -> None:
        context = NormalizeContext(
            "calendly", f"evt_{label}", received, Bookings(store, received.timestamp())
        )
        events = await source.normalize(orjson.loads(orjson.dumps(payload)), context)
        texts[label] = orjson.dumps([e.to_json() for e in events]).decode()
        for event in events:  # what the hub then knows of the booking
            snapshot = orjson.loads(orjson.dumps(event.booking.model_dump(mode="json")))
            for ref in (event.booking.provider_ref, event.booking.id):
                store.bookings[ref] = StoredBooking(snapshot, event.booking.sequence + 1)

    created = fixture_json("calendly/invitee_created.json")
    await run("created", created)
    for name in ("invitee_no_show.created", "invitee_no_show.deleted", "routing_form.created"):
        await run(name, {**created, "event": name})
    canceled, moved = (orjson.loads(body) for body in reschedule())
    await run("reschedule, old half", canceled)
    await run("reschedule, new half", moved)
    canceled, moved = (orjson.loads(body) for body in reschedule(1))
    await run("unknown reschedule, new half", moved)
    await run("unknown reschedule, old half", canceled)
    await run("canceled", fixture_json("calendly/invitee_canceled.json"))

    sparse = fixture_json("calendly/published_invitee_created.json")
    sparse["payload"]["scheduled_event"] = {
        "uri": sparse["payload"]["event"],
        "start_time": "2026-03-29T01:30:00.250000+01:00",
        "end_time": "2026-03-29T03:30:00-04:00",
    }
    await run("published, sparse event", sparse)
    odd = fixture_json("calendly/invitee_canceled.json")
    odd["payload"].update(name=None, first_name=None, last_name=None, timezone=None)
    odd["payload"]["uri"] += "-odd"
    odd["payload"]["cancellation"]["created_at"] = "2026-11-25T18:02:10.5+01:00"
    odd["payload"]["scheduled_event"]["location"] = {"type": "zoom", "join_url": "https://z/1"}
    odd["payload"]["scheduled_event"]["event_memberships"][0]["user_name"] = "Cher"
    odd["created_at"] = "2026-11-25T18:02:11+01:00"
    await run("canceled, odd values", odd)
    _check("calendly_normalized", texts)


# --- every Calenso event, for bookings that test the edges ----------------------------

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC).timestamp()
TEMPLATED = {inxmail.CUSTOMER, inxmail.REBOOK_PARTNER, inxmail.CANCEL_PARTNER}


def _events() -> dict[str, BookingEvent]:
    moment = datetime(2026, 11, 20, 9, 0, 0, 123456, tzinfo=UTC)
    plain = Booking(
        id="b-1",
        uid=booking_uuid("b-1"),
        provider_ref="ref-1",
        meeting=Meeting(id="m-1", name="Beratung"),
        start=datetime(2026, 12, 1, 9, tzinfo=UTC),
        end=datetime(2026, 12, 1, 10, tzinfo=UTC),
        time_zone="Europe/Berlin",
        location=Location(type="physical", value="Praxis, Dufourstrasse 12; Zürich"),
        client=Person(
            id="c-1",
            name="Nora Weber",
            first_name="Nora",
            last_name="Weber",
            email="nora.weber@example.org",
            time_zone="Europe/Berlin",
        ),
        host=Person(id="u-1", name="Jan Frei", email="jan.frei@example.org"),
        guests=[Person(email="Gast@Example.org"), Person(email="gast@example.org")],
        answers=[
            Answer(question="Anliegen", answer="Rücken", position=0),
            Answer(question="Leer", answer=None, position=1),
        ],
        urls={"event": "https://api.calendly.com/scheduled_events/E1", "ics": "https://h/x.ics"},
        notes="Bitte Unterlagen mitbringen.\r\nZweite Zeile, mit Komma; und Semikolon.",
    )
    odd = Booking(
        id="b-2",
        uid=booking_uuid("b-2"),
        status="cancelled",
        start=datetime(2026, 3, 29, 1, 30, 0, 250000, tzinfo=timezone_of(1)),
        end=datetime(2026, 3, 29, 3, 30, tzinfo=timezone_of(-4)),
        client=Person(name="Ünal Ça\u011flar-Öztürk " + "ß" * 40, email=None, id="c-2"),
        host=Person(id="u-2", name='Dr. "Quote" ^ Caret\ttab'),
        guests=[Person(email='bad "guest" <x@y>\r\nX-Evil: 1')],
        cancellation=Cancellation(reason="Krank", by="host", canceler_type="host"),
        sequence=3,
        notes="€" * 60 + "\x0b\x1c" + "\u2028end",
    )
    bare = Booking(
        id="b-3",
        uid=booking_uuid("b-3"),
        meeting=Meeting(),
        start=datetime(2026, 12, 1, 9, tzinfo=UTC),
        end=datetime(2026, 12, 1, 9, 15, tzinfo=UTC),
        client=Person(email="solo@example.org"),
        cancellation=Cancellation(at=datetime(2026, 11, 30, 8, 0, 0, 5, tzinfo=timezone_of(2))),
    )

    def event(kind: str, booking: Booking, original: Booking | None = None) -> BookingEvent:
        return BookingEvent(
            id="evt.0",
            type=kind,
            source="calendly",
            inbound_event_id="evt",
            occurred_at=moment.astimezone(timezone_of(5.5)),
            received_at=moment,
            booking=booking,
            original=original,
            raw={"event": "x", "nested": {"list": [1, 2.5, None, "ü"]}},
        )

    moved_from = plain.model_copy(
        update={
            "start": datetime(2026, 11, 28, 9, tzinfo=UTC),
            "cancellation": Cancellation(reason="Arzttermin", at=moment),
        }
    )
    return {
        "plain": event("booking_confirmed", plain),
        "plain moved": event(
            "booking_rescheduled", plain.model_copy(update={"sequence": 1}), moved_from
        ),
        "odd": event("booking_cancelled", odd, odd),
        "odd moved without original": event("booking_rescheduled", odd),
        "bare": event("booking_cancelled", bare),
    }


def timezone_of(hours: float) -> timezone:
    return timezone(timedelta(hours=hours))


@pytest.fixture
def outbox(monkeypatch) -> tuple[inxmail.Inxmail, list[bytes]]:
    """An Inxmail destination, and the bodies it sends, as bytes, kept instead of sent."""
    sent: list[bytes] = []

    async def post_json(session, url, body, **kwargs):
        sent.append(orjson.dumps(body))
        return DeliveryResult(status=202)

    monkeypatch.setattr(inxmail, "post_json", post_json)
    config = inxmail.InxmailConfig(
        connector="inxmail",
        api_url="https://acme.api.inxmail-commerce.com/api-service/v1",
        api_id="id",
        api_secret="secret",
    )
    context = ConnectorContext(http=None, clock=ManualClock(NOW), posts=Poster())  # type: ignore[arg-type]
    return inxmail.Inxmail("inxmail", config, context), sent


async def test_every_calenso_event_for_edge_bookings(outbox) -> None:
    destination, sent = outbox
    templated = {
        "to": "inxmail",
        "title": "{{ client.name }} / {{ host.starts_at }}",
        "description": "{{ location }} {{ event.type }}",
    }
    texts: dict[str, str] = {}
    for label, event in _events().items():
        data = orjson.loads(orjson.dumps(event.to_json()))  # as a delivery reads it
        texts[f"{label} event"] = orjson.dumps(data).decode()
        for name in inxmail.EVENTS:
            for action in (None, templated) if name in TEMPLATED else (None,):
                message: dict[str, Any] = {"event": name}
                if action:
                    message["action"] = action
                delivery = Delivery("job_1", 1, "r", orjson.loads(orjson.dumps(data)), message)
                key = f"{label} {name}{' templated' if action else ''}"
                try:
                    await destination.deliver(delivery)
                except Exception as error:
                    texts[key] = f"{type(error).__name__}: {error}"
                    continue
                texts[key], texts[f"{key} ics"] = _split(sent[-1])
    _check("calenso_events", texts)


CUSTOMER = {"event": inxmail.CUSTOMER}


@pytest.mark.parametrize(
    ("broken", "message", "refusal"),
    [
        ({"booking": {"id": ["not", "one"]}}, CUSTOMER, inxmail.PermanentDelivery),
        ({"booking": None}, CUSTOMER, inxmail.PermanentDelivery),
        ({"occurred_at": "2026-11-20T09:00:00"}, CUSTOMER, inxmail.PermanentDelivery),
        ({"extra": 1}, CUSTOMER, inxmail.PermanentDelivery),
        ({}, {**CUSTOMER, "action": None}, ValueError),
        ({}, {**CUSTOMER, "action": {"to": ["x"]}}, ValueError),
        ({}, {**CUSTOMER, "action": {"to": "", "title": "{{ client.name"}}, ValueError),
        ({}, {**CUSTOMER, "action": {"to": "", "title": "{{ nobody.name }}"}}, ValueError),
        ({}, {**CUSTOMER, "action": {"to": "", "title": 1}}, ValueError),
        ({}, {**CUSTOMER, "action": {"to": "", "bcc": "x@evil.example"}}, ValueError),
    ],
)
async def test_a_stored_event_or_action_that_does_not_parse_is_refused(
    outbox, broken, message, refusal
) -> None:
    data = orjson.loads(orjson.dumps(_events()["plain"].to_json())) | broken
    destination, _ = outbox
    for _ in range(2):  # and again: a refusal is not remembered as a success
        with pytest.raises(refusal):
            await destination.deliver(Delivery("job_1", 1, "r", data, message))


async def test_each_message_carries_the_invitation_of_its_own_booking(outbox) -> None:
    """Messages whose stored booking is the same share one invitation; any other byte of the
    booking or its time makes another."""
    destination, sent = outbox
    plain = _events()["plain"]
    versions = [
        plain,
        plain,
        plain.with_booking(sequence=1),
        plain.with_booking(notes="Other notes"),
        plain.model_copy(update={"occurred_at": plain.occurred_at + timedelta(seconds=1)}),
        plain,
    ]
    for event in versions:
        for data in (orjson.loads(orjson.dumps(event.to_json())), event.model_dump()):
            await destination.deliver(Delivery("job_1", 1, "r", data, CUSTOMER))
            expected = invitation(event.booking, stamp=event.occurred_at)
            assert _split(sent[-1])[1] == expected.decode()
