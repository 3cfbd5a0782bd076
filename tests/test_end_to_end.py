"""Calendly in, Inxmail out: through the store, the worker, retries and dead letters."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import icalendar
import pytest

from hub.model import booking_uuid
from hub.schemas import validator
from tests.conftest import fixture_bytes, fixture_json

CREATED = "calendly/invitee_created.json"
CANCELED = "calendly/invitee_canceled.json"
INVITEE = fixture_json(CREATED)["payload"]
BASIC = "Basic " + base64.b64encode(b"inx-api-id:inx-api-secret").decode()


def _by_event(requests):
    return {r.json()["event"]: r for r in requests}


async def test_invitee_created_becomes_two_inxmail_events(start_hub) -> None:
    hub = await start_hub()
    event_id = await hub.accept(CREATED)
    assert event_id.startswith("evt_")

    assert await hub.worker.drain() == 3  # one dispatch, two deliveries
    assert len(hub.sink.requests) == 2
    sent = _by_event(hub.sink.requests)
    assert set(sent) == {"calenso.booking.inform-customer", "calenso.booking.inform-partner"}

    booking_uid = booking_uuid(INVITEE["uri"])
    for request in sent.values():
        assert request.method == "POST"
        assert request.path == "/api-service/v1/events"
        assert request.headers["Authorization"] == BASIC
        assert request.headers["Content-Type"] == "application/json"
        body = request.json()
        validator("inxmail/event.json").check(body)
        payload = body["payload"]
        assert payload["customer"]["email"] == "mara.keller@example.org"
        assert (payload["customer"]["prename"], payload["customer"]["lastname"]) == (
            "Mara",
            "Keller",
        )
        assert payload["worker"]["full_name"] == "Lea Brunner"
        assert payload["worker"]["email"] == "dr.brunner@example.org"
        appointment = payload["appointment"]
        assert appointment["start"] == "2026-12-03T09:30:00+00:00"
        assert appointment["end"] == "2026-12-03T10:15:00+00:00"
        assert appointment["uuid"] == booking_uid
        assert appointment["remarks"] == "What would you like to discuss?: Knee pain after running"
        assert appointment["cancellation_reason"] is None

        [attachment] = body["attachments"]
        assert (attachment["filename"], attachment["content-type"]) == (
            "Termin.ics",
            "text/calendar",
        )
        calendar = icalendar.Calendar.from_ical(base64.b64decode(attachment["content"]))
        assert calendar["METHOD"] == "REQUEST"
        [vevent] = calendar.walk("VEVENT")
        assert vevent.decoded("DTSTART") == datetime(2026, 12, 3, 9, 30, tzinfo=UTC)
        assert vevent.decoded("DTEND") == datetime(2026, 12, 3, 10, 15, tzinfo=UTC)
        assert str(vevent["UID"]) == f"{booking_uid}@hub"
        assert str(vevent["ORGANIZER"]) == "mailto:dr.brunner@example.org"
        attendees = {str(a) for a in vevent["ATTENDEE"]}
        assert attendees == {"mailto:mara.keller@example.org", "mailto:jonas.keller@example.org"}

    # each delivery carries its own job id as the transaction id
    ids = {r.json()["transactionId"] for r in hub.sink.requests}
    assert len(ids) == 2
    for job_id in ids:
        job = await hub.store.get_job(job_id)
        assert job.state == "done"
        assert job.event_id == event_id
        assert [a["outcome"] for a in job.attempts] == ["done"]
        assert job.attempts[0]["status"] == 202


async def test_invitee_canceled_becomes_the_two_cancel_events(start_hub) -> None:
    hub = await start_hub()
    await hub.accept(CANCELED)
    await hub.worker.drain()
    sent = _by_event(hub.sink.requests)
    assert set(sent) == {
        "calenso.booking.cancel.inform-customer",
        "calenso.booking.cancel.inform-partner",
    }
    for request in sent.values():
        body = request.json()
        validator("inxmail/event.json").check(body)
        assert "attachments" not in body  # the Calenso cancel events carry none
        assert body["payload"]["appointment"]["cancellation_reason"] == "I am travelling that week"
    partner = sent["calenso.booking.cancel.inform-partner"].json()["payload"]["appointment"]
    assert partner["deleted"] == "2026-11-25T17:02:10+00:00"
    customer = sent["calenso.booking.cancel.inform-customer"].json()["payload"]["appointment"]
    assert "deleted" not in customer


async def test_a_redelivered_webhook_is_delivered_once(start_hub) -> None:
    hub = await start_hub()
    body = fixture_bytes(CREATED)
    first = await hub.post_calendly(body)
    hub.clock.advance(60)  # Calendly's retry: same body, fresh signature timestamp
    again = await hub.post_calendly(body)
    assert first.status == again.status == 202
    first_answer, again_answer = await first.json(), await again.json()
    assert first_answer == {"id": first_answer["id"], "duplicate": False}
    assert again_answer == {"id": first_answer["id"], "duplicate": True}
    await hub.worker.drain()
    assert len(hub.sink.requests) == 2  # one customer, one partner event


SINGLE_EVENT_ROUTE = [
    {
        "name": "customer",
        "on": ["booking_confirmed"],
        "send": [{"to": "inxmail", "event": "calenso.booking.inform-customer"}],
    }
]


async def test_failed_delivery_is_retried_with_backoff_until_it_succeeds(start_hub) -> None:
    hub = await start_hub(routes=SINGLE_EVENT_ROUTE)
    hub.sink.statuses.extend([500, 500])  # then the default, 202
    await hub.accept(CREATED)

    assert await hub.worker.drain() == 2  # dispatch, first attempt
    [first] = hub.sink.requests
    job_id = first.json()["transactionId"]
    job = await hub.store.get_job(job_id)
    assert job.state == "retry"
    # attempt 1 waits base 10 s ± 20 %: not due yet, and due within 12 s
    assert hub.clock.now() + 8 <= job.due_at <= hub.clock.now() + 12
    assert await hub.worker.drain() == 0

    hub.clock.advance(12)
    assert await hub.worker.drain() == 1
    job = await hub.store.get_job(job_id)
    assert job.state == "retry"
    hub.clock.advance(24)  # attempt 2 waits 20 s ± 20 %
    assert await hub.worker.drain() == 1

    assert len(hub.sink.requests) == 3
    assert {r.json()["transactionId"] for r in hub.sink.requests} == {job_id}
    job = await hub.store.get_job(job_id)
    assert job.state == "done"
    assert [(a["number"], a["outcome"], a["status"]) for a in job.attempts] == [
        (1, "retry", 500),
        (2, "retry", 500),
        (3, "done", 202),
    ]
    assert "answered 500" in job.attempts[0]["error"]
    assert job.attempts[0]["response"] == '{"status": 500}'
    assert all(a["duration_ms"] >= 0 for a in job.attempts)


async def test_delivery_that_always_fails_becomes_a_dead_letter(start_hub) -> None:
    hub = await start_hub(routes=SINGLE_EVENT_ROUTE)
    hub.sink.default = 503
    await hub.accept(CREATED)
    await hub.worker.drain()
    for _ in range(5):
        hub.clock.advance(3600)
        await hub.worker.drain()
    assert len(hub.sink.requests) == 3  # attempts: 3 in the test configuration
    [job] = await hub.store.dead_letters()
    assert job.state == "dead"
    assert job.reason.startswith("gave up after attempt 3")
    assert [a["outcome"] for a in job.attempts] == ["retry", "retry", "dead"]
    stats = await hub.store.stats()
    assert (stats.due, stats.in_flight, stats.dead) == (0, 0, 1)


async def test_a_client_error_is_a_dead_letter_at_once(start_hub) -> None:
    hub = await start_hub(routes=SINGLE_EVENT_ROUTE)
    hub.sink.default = 404
    await hub.accept(CREATED)
    await hub.worker.drain()
    [job] = await hub.store.dead_letters()
    assert len(hub.sink.requests) == 1
    assert [(a["outcome"], a["status"]) for a in job.attempts] == [("dead", 404)]


@pytest.mark.parametrize("retry_after", ["600", "Fri, 20 Nov 2026 08:25:45 GMT"])
async def test_retry_after_is_honoured(start_hub, retry_after) -> None:
    hub = await start_hub(routes=SINGLE_EVENT_ROUTE)
    hub.sink.statuses.append((429, {"Retry-After": retry_after}))
    await hub.accept(CREATED)
    await hub.worker.drain()
    [request] = hub.sink.requests
    job = await hub.store.get_job(request.json()["transactionId"])
    assert job.state == "retry"
    assert job.due_at == pytest.approx(hub.clock.now() + 600, abs=1)
    hub.clock.advance(599)
    assert await hub.worker.drain() == 0
    hub.clock.advance(2)
    assert await hub.worker.drain() == 1
    assert (await hub.store.get_job(job.id)).state == "done"


async def test_expired_inxmail_secret_stops_sending_with_a_clear_reason(start_hub) -> None:
    hub = await start_hub(destinations__inxmail__secret_expires="2026-11-01")
    await hub.accept(CREATED)
    await hub.worker.drain()
    assert hub.sink.requests == []
    dead = await hub.store.dead_letters()
    assert len(dead) == 2
    job = dead[0]
    assert "expired on 2026-11-01" in job.reason
