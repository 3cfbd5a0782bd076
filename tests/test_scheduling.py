"""Bookings and time: reschedule pairing, reminders that move and drop, no-shows, DST,
conditions and scopes on routes, templates, and the invitation a booking links to."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from datetime import UTC, datetime, timedelta

import icalendar
import pytest
import vobject

from hub.config import parse_config
from hub.errors import ConfigError
from hub.model import booking_uuid
from hub.plugins import get_plugin_manager
from hub.schemas import validator
from hub.store.redis import RedisStore
from tests.conftest import ENVIRON, REDIS_URL, config_yaml, fixture_json

CREATED = "calendly/invitee_created.json"
CANCELED = "calendly/invitee_canceled.json"
OLD = fixture_json(CREATED)["payload"]["uri"]
NEW = "https://api.calendly.com/scheduled_events/EVT0000000043/invitees/INV0000000043"
START = datetime(2026, 12, 3, 9, 30, tzinfo=UTC)
NEW_START = datetime(2026, 12, 10, 14, 0, tzinfo=UTC)


# A route for every change to a booking, to Inxmail with its default events.
ALL_CHANGES = [
    {
        "name": "all",
        "on": ["booking_confirmed", "booking_rescheduled", "booking_cancelled"],
        "send": [{"to": "inxmail"}],
    }
]


def reschedule(n: int = 0) -> tuple[bytes, bytes]:
    """Calendly's two webhooks for moving booking ``n`` to 10 December, 14:00 UTC:
    the old invitee cancelled (rescheduled), the new one created (old_invitee)."""
    old, new = _uri(OLD, n), _uri(NEW, n)
    canceled = fixture_json(CANCELED)
    invitee = canceled["payload"]
    invitee.update(uri=old, rescheduled=True, new_invitee=new, email=_email(n))
    invitee["cancellation"]["reason"] = "I need a later slot"
    created = fixture_json(CREATED)
    invitee = created["payload"]
    invitee.update(uri=new, old_invitee=old, email=_email(n))
    invitee["scheduled_event"].update(
        uri="https://api.calendly.com/scheduled_events/EVT0000000043",
        start_time="2026-12-10T14:00:00.000000Z",
        end_time="2026-12-10T14:45:00.000000Z",
    )
    created["created_at"] = canceled["created_at"]
    return json.dumps(canceled).encode(), json.dumps(created).encode()


def booking(n: int = 0) -> bytes:
    """The confirmation of booking ``n``."""
    created = fixture_json(CREATED)
    created["payload"].update(uri=_uri(OLD, n), email=_email(n))
    return json.dumps(created).encode()


def _uri(uri: str, n: int) -> str:
    return uri if n == 0 else f"{uri}-{n}"


def _email(n: int) -> str:
    return "mara.keller@example.org" if n == 0 else f"client{n}@example.org"


async def post(hub, body: bytes) -> str:
    response = await hub.post_calendly(body)
    assert response.status == 202, await response.text()
    return (await response.json())["id"]


def events(hub) -> list[str]:
    return [r.json()["event"].removeprefix("calenso.") for r in hub.sink.requests]


def ics_of(request) -> bytes:
    [attachment] = request.json()["attachments"]
    return base64.b64decode(attachment["content"])


async def test_reschedule_cancelled_half_first_is_one_reschedule(start_hub) -> None:
    hub = await start_hub(routes=ALL_CHANGES)
    await post(hub, booking())
    await hub.worker.drain()
    canceled, created = reschedule()
    await post(hub, canceled)
    await hub.worker.drain()
    assert events(hub) == ["booking.inform-customer", "booking.inform-partner"]  # it waits
    await post(hub, created)
    await hub.worker.drain()
    assert events(hub)[2:] == ["booking.rebook.inform-customer", "booking.rebook.inform-partner"]

    confirmation, rebook = hub.sink.requests[0].json(), hub.sink.requests[2].json()
    validator("inxmail/event.json").check(rebook)
    new, old = rebook["payload"]["appointment"], rebook["payload"]["original_appointment"]
    assert (new["start"], old["start"]) == (
        "2026-12-10T14:00:00+00:00",
        "2026-12-03T09:30:00+00:00",
    )
    assert new["uuid"] == old["uuid"] == confirmation["payload"]["appointment"]["uuid"]
    assert new["rebook_reason"] == "I need a later slot"

    # the invitation updates the same calendar entry: same UID, higher SEQUENCE
    first = icalendar.Calendar.from_ical(ics_of(hub.sink.requests[0]))
    moved = icalendar.Calendar.from_ical(ics_of(hub.sink.requests[2]))
    [before], [after] = first.walk("VEVENT"), moved.walk("VEVENT")
    assert before["UID"] == after["UID"] == f"{booking_uuid(OLD)}@hub"
    assert (before["SEQUENCE"], after["SEQUENCE"]) == (0, 1)
    assert after.decoded("DTSTART") == NEW_START
    # and an independent parser reads it the same way
    parsed = vobject.readOne(ics_of(hub.sink.requests[2]).decode())
    assert parsed.method.value == "REQUEST"
    assert parsed.vevent.uid.value == f"{booking_uuid(OLD)}@hub"
    assert int(parsed.vevent.sequence.value) == 1
    assert parsed.vevent.dtstart.value == NEW_START
    assert parsed.vevent.organizer.value == "mailto:dr.brunner@example.org"


async def test_reschedule_new_half_first_is_one_reschedule(start_hub) -> None:
    hub = await start_hub(routes=ALL_CHANGES)
    await post(hub, booking())
    await hub.worker.drain()
    canceled, created = reschedule()
    await post(hub, created)  # the booking is known: the reschedule goes at once
    await hub.worker.drain()
    await post(hub, canceled)  # …and its other half is no cancellation
    await hub.worker.drain()
    assert events(hub)[2:] == ["booking.rebook.inform-customer", "booking.rebook.inform-partner"]
    stats = await hub.store.stats()
    assert (stats.due, stats.dead) == (0, 0)


async def test_reschedule_of_a_booking_the_hub_never_saw_waits_for_its_other_half(start_hub):
    hub = await start_hub(
        routes=[{"name": "moves", "on": ["booking_rescheduled"], "send": [{"to": "inxmail"}]}]
    )
    canceled, created = reschedule()
    await post(hub, created)
    await hub.worker.drain()
    assert events(hub) == []
    await post(hub, canceled)
    await hub.worker.drain()
    assert events(hub) == ["booking.rebook.inform-customer", "booking.rebook.inform-partner"]
    original = hub.sink.requests[0].json()["payload"]["original_appointment"]
    assert original["start"] == "2026-12-03T09:30:00+00:00"  # from the cancelled half


@pytest.mark.parametrize("first", ["cancelled half", "new half"])
async def test_reschedule_halves_processed_at_once_by_two_workers(start_hub, first) -> None:
    hub = await start_hub(
        routes=[
            {
                "name": "all",
                "on": ["booking_rescheduled", "booking_cancelled"],
                "send": [{"to": "inxmail"}],
            }
        ]
    )
    cancelled_halves = set()
    for n in range(8):
        canceled, created = reschedule(n + 1)
        for body in (canceled, created) if first == "cancelled half" else (created, canceled):
            event_id = await post(hub, body)
            if body is canceled:
                cancelled_halves.add(event_id)
    jobs = await hub.store.claim(hub.clock.now(), 30, 100)
    assert len(jobs) == 16  # the two halves have different ordering keys
    # the halves of each pair on two workers (two connections), at the same moment
    other = RedisStore.from_url(REDIS_URL, prefix=hub.prefix)
    second = type(hub.worker)(
        store=other,
        sources=hub.worker.sources,
        destinations=hub.worker.destinations,
        router=hub.worker.router,
        config=hub.worker.config,
        clock=hub.clock,
    )
    try:
        await asyncio.gather(
            *(
                (hub.worker if job.event_id in cancelled_halves else second).process(job)
                for job in jobs
            )
        )
        await hub.worker.drain()
    finally:
        await other.close()
    sent = events(hub)
    assert sent.count("booking.rebook.inform-customer") == 8
    assert sent.count("booking.rebook.inform-partner") == 8
    assert len(sent) == 16  # no cancellation among them
    hub.clock.advance(3600)  # nor later, when the pairs' fallback timers would be due
    await hub.worker.drain()
    assert len(events(hub)) == 16


async def test_a_cancelled_half_whose_partner_never_comes_is_a_cancellation(start_hub) -> None:
    hub = await start_hub()
    canceled, _ = reschedule()
    await post(hub, canceled)
    await hub.worker.drain()
    assert events(hub) == []
    hub.clock.advance(9 * 60)  # reschedule_window is 10 minutes
    assert await hub.worker.drain() == 0
    hub.clock.advance(61)
    await hub.worker.drain()
    assert events(hub) == ["booking.cancel.inform-customer", "booking.cancel.inform-partner"]


REMINDER = {
    "name": "reminder",
    "on": "before_meeting_starts",
    "offset": "24h",
    "send": [{"to": "inxmail"}],
}


async def test_reminder_is_scheduled_moved_and_sent(start_hub) -> None:
    hub = await start_hub(routes=[REMINDER])
    key = f"trigger|reminder|{booking_uuid(OLD)}"
    await post(hub, booking())
    await hub.worker.drain()
    job = await hub.store.scheduled(key)
    assert job.due_at == (START - timedelta(hours=24)).timestamp()

    canceled, created = reschedule()
    await post(hub, canceled)
    await post(hub, created)
    await hub.worker.drain()
    moved = await hub.store.scheduled(key)
    assert moved.due_at == (NEW_START - timedelta(hours=24)).timestamp()
    assert await hub.store.get_job(job.id) is None  # replaced, not duplicated

    hub.clock.advance(moved.due_at - hub.clock.now() - 1)
    assert await hub.worker.drain() == 0
    hub.clock.advance(1)
    await hub.worker.drain()
    assert events(hub) == ["booking.remind-customer"]
    reminder = hub.sink.requests[0].json()
    validator("inxmail/event.json").check(reminder)
    assert reminder["payload"]["appointment"]["start"] == "2026-12-10T14:00:00+00:00"
    assert await hub.store.scheduled(key) is None


async def test_cancellation_drops_the_reminder(start_hub) -> None:
    hub = await start_hub(routes=[REMINDER])
    await post(hub, booking())
    await hub.worker.drain()
    key = f"trigger|reminder|{booking_uuid(OLD)}"
    job = await hub.store.scheduled(key)
    cancel = fixture_json(CANCELED)
    await post(hub, json.dumps(cancel).encode())
    await hub.worker.drain()
    assert await hub.store.scheduled(key) is None
    assert await hub.store.get_job(job.id) is None
    hub.clock.advance(30 * 86400)
    assert await hub.worker.drain() == 0
    assert events(hub) == []


@pytest.mark.parametrize(("if_late", "sent"), [("skip", []), ("now", ["booking.remind-customer"])])
async def test_a_booking_made_after_its_reminder_time(start_hub, if_late, sent) -> None:
    hub = await start_hub(routes=[{**REMINDER, "if_late": if_late}])
    hub.clock.advance((START - timedelta(hours=2)).timestamp() - hub.clock.now())
    await post(hub, booking())
    await hub.worker.drain()
    assert events(hub) == sent


SURVEY = {"name": "survey", "on": "after_meeting_ends", "offset": "1h", "send": [{"to": "inxmail"}]}


@pytest.mark.parametrize(
    ("keep", "sent"),
    [(False, []), (True, ["smart-action.survey-after-appointment.inform-customer"])],
)
async def test_a_no_show_drops_the_survey_unless_told_not_to(start_hub, keep, sent) -> None:
    hub = await start_hub(routes=[{**SURVEY, "keep_on_no_show": keep}])
    await post(hub, booking())
    await hub.worker.drain()
    no_show = fixture_json(CREATED)
    no_show["event"] = "invitee_no_show.created"
    await post(hub, json.dumps(no_show).encode())
    await hub.worker.drain()
    hub.clock.advance((START + timedelta(hours=3)).timestamp() - hub.clock.now())
    await hub.worker.drain()
    assert events(hub) == sent


async def test_a_reminder_across_a_dst_change_lands_at_the_right_instant(start_hub) -> None:
    # Zurich moves to summer time on 29 March 2026 at 01:00 UTC. A meeting at 09:00 local
    # time on the 30th (07:00 UTC) is reminded 24 hours before: 07:00 UTC on the 29th,
    # which is 09:00 local time again, not 08:00.
    hub = await start_hub(routes=[REMINDER])
    hub.clock.advance(datetime(2026, 3, 1, tzinfo=UTC).timestamp() - hub.clock.now())
    payload = json.loads(booking())
    payload["payload"]["scheduled_event"].update(
        start_time="2026-03-30T07:00:00Z", end_time="2026-03-30T07:45:00Z"
    )
    await post(hub, json.dumps(payload).encode())
    await hub.worker.drain()
    job = await hub.store.scheduled(f"trigger|reminder|{booking_uuid(OLD)}")
    due = datetime.fromtimestamp(job.due_at, UTC)
    assert due == datetime(2026, 3, 29, 7, 0, tzinfo=UTC)
    from zoneinfo import ZoneInfo

    assert due.astimezone(ZoneInfo("Europe/Zurich")).hour == 9
    hub.clock.advance(job.due_at - hub.clock.now())
    await hub.worker.drain()
    assert events(hub) == ["booking.remind-customer"]


async def test_conditions_and_meeting_scopes_choose_routes(start_hub) -> None:
    hub = await start_hub(
        routes=[
            {
                "name": "consults",
                "on": "booking_confirmed",
                "when": 'booking.meeting.name.startsWith("Consultation")',
                "send": [{"to": "inxmail", "event": "calenso.booking.inform-customer"}],
            },
            {
                "name": "groups",
                "on": "booking_confirmed",
                "when": "size(booking.guests) > 3",
                "send": [{"to": "inxmail", "event": "calenso.booking.inform-partner"}],
            },
            {
                "name": "type 7",
                "on": "booking_confirmed",
                "meetings": ["https://api.calendly.com/event_types/TYPE00000007"],
                "send": [{"to": "inxmail", "event": "calenso.booking.inform-partner"}],
            },
            {
                "name": "other type",
                "on": "booking_confirmed",
                "meetings": ["Yoga class"],
                "send": [{"to": "inxmail", "event": "calenso.booking.inform-customer"}],
            },
        ]
    )
    await post(hub, booking())
    await hub.worker.drain()
    assert sorted(events(hub)) == ["booking.inform-customer", "booking.inform-partner"]
    routes = {r.json()["event"] for r in hub.sink.requests}
    assert len(routes) == 2


async def test_templates_render_the_neetocal_variables_in_each_time_zone(start_hub) -> None:
    hub = await start_hub(
        sources__calendly__host_time_zone="America/New_York",
        routes=[
            {
                "name": "confirm",
                "on": "booking_confirmed",
                "send": [
                    {
                        "to": "inxmail",
                        "event": "calenso.booking.inform-customer",
                        "title": "{{ meeting.name }} with {{ host.name }}",
                        "description": "{{ client.first_name }}: {{ client.starts_at }} / "
                        "host {{ host.starts_at }}",
                    }
                ],
            }
        ],
    )
    await post(hub, booking())
    await hub.worker.drain()
    appointment = hub.sink.requests[0].json()["payload"]["appointment"]
    assert appointment["title"] == "Consultation (45 min) with Lea Brunner"
    assert appointment["description"] == "Mara: 2026-12-03 10:30 CET / host 2026-12-03 04:30 EST"


@pytest.mark.parametrize(
    ("route", "message"),
    [
        ({"when": 'booking.meeting.name.startsWith("Con"'}, "route 'r': when: `booking.meeting"),
        (
            {"send": [{"to": "inxmail", "title": "{{ client.nme }}"}]},
            "routes.0.send.0.title: template '{{ client.nme }}'",
        ),
        ({"send": [{"to": "inxmail", "title": "{% if %}"}]}, "(route 'r')"),
        (
            {"on": ["before_meeting_starts", "booking_confirmed"], "offset": "1h"},
            "must be the route's only `on`",
        ),
        ({"on": "before_meeting_starts"}, "needs an `offset`"),
        ({"offset": "1h"}, "`offset` is for before_meeting_starts and after_meeting_ends only"),
        (
            {"send": [{"to": "inxmail", "event": "calenso.booking.rebook.inform-customer"}]},
            "is sent for booking_rescheduled only",
        ),
    ],
)
def test_route_errors_at_load_name_the_route(route, message) -> None:
    data = {"name": "r", "on": "booking_confirmed", "send": [{"to": "inxmail"}], **route}
    text = config_yaml("p", "http://127.0.0.1:9", routes=[data])
    with pytest.raises(ConfigError) as raised:
        parse_config(text, get_plugin_manager(), environ=ENVIRON)
    assert message in str(raised.value)


async def test_the_invitation_link_serves_the_current_version(start_hub) -> None:
    hub = await start_hub(
        server__ics_secret="ics-link-secret-0",
        server__public_url="https://hub.example.org",
        routes=[
            {
                "name": "confirm",
                "on": "booking_confirmed",
                "send": [
                    {
                        "to": "inxmail",
                        "event": "calenso.booking.inform-customer",
                        "description": "{{ booking.ics_url }}",
                    }
                ],
            }
        ],
    )
    await post(hub, booking())
    await hub.worker.drain()
    link = hub.sink.requests[0].json()["payload"]["appointment"]["description"]
    assert link.startswith(f"https://hub.example.org/bookings/{booking_uuid(OLD)}.")
    path = link.removeprefix("https://hub.example.org")

    response = await hub.client.get(path)
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/calendar")
    calendar = icalendar.Calendar.from_ical(await response.read())
    assert calendar["METHOD"] == "REQUEST"

    await post(hub, json.dumps(fixture_json(CANCELED)).encode())
    await hub.worker.drain()
    cancelled = icalendar.Calendar.from_ical(await (await hub.client.get(path)).read())
    [event] = cancelled.walk("VEVENT")
    assert cancelled["METHOD"] == "CANCEL"
    assert (event["STATUS"], event["SEQUENCE"]) == ("CANCELLED", 1)

    forged = path.replace(".ics", "x.ics")
    assert (await hub.client.get(forged)).status == 404
    unknown = f"/bookings/{booking_uuid('nobody')}.AAAA.ics"
    assert (await hub.client.get(unknown)).status == 404


async def test_replaying_a_past_event_does_not_roll_the_booking_back(start_hub) -> None:
    from hub.admin.commands import replay
    from tests.test_delivery import service_of

    hub = await start_hub(routes=[REMINDER])
    first = await post(hub, booking())
    await hub.worker.drain()
    canceled, created = reschedule()
    await post(hub, canceled)
    await post(hub, created)
    await hub.worker.drain()
    out = io.StringIO()
    await replay(service_of(hub), out, [first], destination=None, since=None, resend=True)
    await hub.worker.drain()
    stored = await hub.store.get_booking(booking_uuid(OLD))
    assert (stored.snapshot["start"], stored.sequence) == ("2026-12-10T14:00:00Z", 1)
    job = await hub.store.scheduled(f"trigger|reminder|{booking_uuid(OLD)}")
    assert job.due_at == (NEW_START - timedelta(hours=24)).timestamp()


async def test_the_new_half_after_the_window_reschedules_the_cancelled_booking(start_hub) -> None:
    hub = await start_hub(routes=ALL_CHANGES)
    await post(hub, booking())
    await hub.worker.drain()
    canceled, created = reschedule()
    await post(hub, canceled)
    await hub.worker.drain()
    hub.clock.advance(11 * 60)  # past reschedule_window: the cancellation goes out
    await hub.worker.drain()
    assert events(hub)[2:] == ["booking.cancel.inform-customer", "booking.cancel.inform-partner"]
    await post(hub, created)  # Calendly's retry of the new half, late
    await hub.worker.drain()
    assert events(hub)[4:] == ["booking.rebook.inform-customer", "booking.rebook.inform-partner"]
    stored = await hub.store.get_booking(booking_uuid(OLD))
    assert (stored.snapshot["status"], stored.sequence) == ("active", 2)


async def test_two_quick_reschedules_keep_one_booking(start_hub) -> None:
    hub = await start_hub(
        routes=[{"name": "moves", "on": "booking_rescheduled", "send": [{"to": "inxmail"}]}]
    )
    await post(hub, booking())
    await hub.worker.drain()
    a_cancel, b_created = reschedule()
    # then B to C, 17 December
    b_cancel, c_created = (json.loads(body) for body in reschedule())
    b, c = NEW, NEW.replace("INV0000000043", "INV0000000044")
    b_cancel["payload"].update(uri=b, new_invitee=c)
    c_created["payload"].update(uri=c, old_invitee=b)
    c_created["payload"]["scheduled_event"].update(
        start_time="2026-12-17T14:00:00Z", end_time="2026-12-17T14:45:00Z"
    )
    c_id = await post(hub, json.dumps(c_created).encode())
    for body in (a_cancel, b_created, json.dumps(b_cancel).encode()):
        await post(hub, body)
    # C's new half is processed before the first reschedule is known
    [c_job] = [j for j in await hub.store.claim(hub.clock.now(), 30, 10) if j.event_id == c_id]
    await hub.worker.process(c_job)
    hub.clock.advance(31)  # the others' leases from that claim run out
    await hub.worker.drain()
    last = hub.sink.requests[-1]
    assert last.json()["payload"]["appointment"]["start"] == "2026-12-17T14:00:00+00:00"
    [vevent] = icalendar.Calendar.from_ical(ics_of(last)).walk("VEVENT")
    assert (vevent["UID"], vevent["SEQUENCE"]) == (f"{booking_uuid(OLD)}@hub", 2)


async def test_a_reminder_running_while_its_booking_moves_does_not_send(start_hub) -> None:
    hub = await start_hub(routes=[REMINDER])
    await post(hub, booking())
    await hub.worker.drain()
    hub.clock.advance((START - timedelta(hours=24)).timestamp() - hub.clock.now())
    [timer] = await hub.store.claim(hub.clock.now(), 30, 10)  # the reminder, running
    canceled, created = reschedule()
    await post(hub, canceled)
    await post(hub, created)
    for job in await hub.store.claim(hub.clock.now(), 30, 10):
        await hub.worker.process(job)  # the reschedule
    await hub.worker.process(timer)  # the old reminder finishes: the booking has moved
    await hub.worker.drain()
    assert events(hub) == []
    hub.clock.advance((NEW_START - timedelta(hours=24)).timestamp() - hub.clock.now())
    await hub.worker.drain()
    assert events(hub) == ["booking.remind-customer"]


async def test_a_template_failing_on_a_booking_is_a_dead_letter_not_a_sick_destination(
    start_hub,
) -> None:
    hub = await start_hub(
        routes=[
            {
                "name": "confirm",
                "on": "booking_confirmed",
                "send": [
                    {
                        "to": "inxmail",
                        "event": "calenso.booking.inform-customer",
                        "title": "{{ 10 // (client.name | length - 11) }}",
                    }
                ],
            }
        ],  # "Mara Keller": 11
    )
    await post(hub, booking())
    await hub.worker.drain()
    [dead] = await hub.store.dead_letters()
    assert dead.reason.startswith("a template of the route failed")
    [state] = await hub.store.destination_states(["inxmail"])
    assert state.window_failed == 0


async def test_a_late_reminder_is_not_sent_once_the_meeting_has_begun(start_hub) -> None:
    hub = await start_hub(routes=[{**REMINDER, "if_late": "now"}])
    hub.clock.advance((START + timedelta(minutes=5)).timestamp() - hub.clock.now())
    await post(hub, booking())
    await hub.worker.drain()
    assert events(hub) == []


async def test_answers_with_fields_the_hub_does_not_know_are_kept(start_hub) -> None:
    hub = await start_hub()
    payload = json.loads(booking())
    payload["payload"]["questions_and_answers"][0]["answer_type"] = "text"
    await post(hub, json.dumps(payload).encode())
    await hub.worker.drain()
    assert events(hub) == ["booking.inform-customer", "booking.inform-partner"]
