"""Calendar invitations by email, to a real SMTP server the test starts (aiosmtpd)."""

from __future__ import annotations

import asyncio
import email
import socket
from email import policy

import icalendar
import pytest
import vobject
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from hub.model import booking_uuid
from tests.conftest import fixture_json

OLD = fixture_json("calendly/invitee_created.json")["payload"]["uri"]


class Inbox:
    """An SMTP server's handler: keeps every message it is given."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.arrived = asyncio.Event()
        self.refuse: int | None = None

    async def handle_DATA(self, server, session, envelope):
        if self.refuse:
            return f"{self.refuse} mailbox unavailable"
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"


def _authenticate(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.password == b"smtp-pass"
    return AuthResult(success=ok)


@pytest.fixture
def smtp():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    inbox = Inbox()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=_authenticate,
        auth_require_tls=False,
    )
    controller.start()
    inbox.port = port
    yield inbox
    controller.stop()


ACTION = {
    "to": "mail",
    "emails": ["{{ client.email }}", "frontdesk@example.org"],
    "email_subject": "You have a meeting with {{ host.name }}",
    "email_body": "<h3>Hello {{ client.name }}</h3><p>See you at {{ client.starts_at }}</p>"
    "<script>alert('x')</script><img src=x onerror=alert(1)>",
    "calendar_invite_subject": "Meeting with {{ host.name }}",
    "calendar_invite_body": "<p>Join: {{ meeting.name }}</p>",
}


def mail_destination(smtp) -> dict:
    """The email_invite destination, sending to the test's SMTP server."""
    return {
        "connector": "email_invite",
        "host": "127.0.0.1",
        "port": smtp.port,
        "security": "none",
        "username": "hub",
        "password": "smtp-pass",
        "sender": "bookings@example.org",
        "sender_name": "Praxis Seefeld",
    }


async def start(start_hub, smtp, **overrides):
    return await start_hub(
        destinations__mail=mail_destination(smtp),
        routes=[
            {"name": "invites", "on": ["booking_confirmed", "booking_cancelled"], "send": [ACTION]}
        ],
        **overrides,
    )


def calendar_part(message):
    [part] = [p for p in message.walk() if p.get_content_type() == "text/calendar"]
    return part


async def test_an_invitation_is_mailed_and_its_cancellation_follows(start_hub, smtp) -> None:
    hub = await start(start_hub, smtp)
    await hub.accept("calendly/invitee_created.json")
    await hub.worker.drain()
    [message] = smtp.messages
    assert smtp.envelopes == [
        ("bookings@example.org", ["mara.keller@example.org", "frontdesk@example.org"])
    ]
    assert message["Subject"] == "You have a meeting with Lea Brunner"
    assert message["From"] == "Praxis Seefeld <bookings@example.org>"
    assert message.get_content_type() == "multipart/alternative"
    html = message.get_body(("html",)).get_content()
    assert "<h3>Hello Mara Keller</h3>" in html
    assert "2026-12-03 10:30 CET" in html  # the client's time zone
    assert "<script" not in html and "<img" not in html and "onerror" not in html

    part = calendar_part(message)
    assert part.get_params()[1:] == [("charset", "utf-8"), ("method", "REQUEST")]
    calendar = icalendar.Calendar.from_ical(part.get_content())
    [vevent] = calendar.walk("VEVENT")
    assert str(vevent["SUMMARY"]) == "Meeting with Lea Brunner"
    assert str(vevent["DESCRIPTION"]) == "Join: Consultation (45 min)"
    assert (str(vevent["UID"]), vevent["SEQUENCE"]) == (f"{booking_uuid(OLD)}@hub", 0)
    attendees = {str(a) for a in vevent["ATTENDEE"]}
    assert "mailto:frontdesk@example.org" in attendees

    await hub.accept("calendly/invitee_canceled.json")
    await hub.worker.drain()
    cancelled = calendar_part(smtp.messages[1])
    assert ("method", "CANCEL") in cancelled.get_params()
    independent = vobject.readOne(cancelled.get_content())
    assert independent.method.value == "CANCEL"
    assert independent.vevent.uid.value == f"{booking_uuid(OLD)}@hub"
    assert int(independent.vevent.sequence.value) == 1
    assert independent.vevent.status.value == "CANCELLED"


async def test_a_refusing_server_is_a_dead_letter(start_hub, smtp) -> None:
    hub = await start(start_hub, smtp)
    smtp.refuse = 550
    await hub.accept("calendly/invitee_created.json")
    await hub.worker.drain()
    [dead] = await hub.store.dead_letters()
    assert "550" in dead.reason
    assert dead.attempts[0]["status"] == 550


async def test_a_server_that_is_down_is_retried(start_hub, smtp) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    hub = await start(start_hub, smtp, destinations__mail__port=closed)
    await hub.accept("calendly/invitee_created.json")
    await hub.worker.drain()
    stats = await hub.store.stats()
    assert (stats.due, stats.dead) == (1, 0)  # the delivery waits for its retry
    assert smtp.messages == []


async def test_booking_values_cannot_add_recipients_or_markup(start_hub, smtp) -> None:
    import json

    from tests.test_scheduling import post

    hub = await start(start_hub, smtp)
    payload = fixture_json("calendly/invitee_created.json")
    payload["payload"]["name"] = 'Mara <a href="https://phish.example">click</a>'
    payload["payload"]["scheduled_event"]["name"] = "Consult & Review"
    await post(hub, json.dumps(payload).encode())
    await hub.worker.drain()
    [message] = smtp.messages
    html = message.get_body(("html",)).get_content()
    assert '<a href="https://phish.example">' not in html
    assert "&lt;a href" in html  # shown as text, not a link
    [vevent] = icalendar.Calendar.from_ical(calendar_part(message).get_content()).walk("VEVENT")
    assert str(vevent["DESCRIPTION"]) == "Join: Consult & Review"

    injected = fixture_json("calendly/invitee_created.json")
    injected["payload"].update(
        uri=injected["payload"]["uri"] + "-2", email="eve@example.org, spy@evil.example"
    )
    await post(hub, json.dumps(injected).encode())
    await hub.worker.drain()
    [dead] = await hub.store.dead_letters()
    assert "is not one email address" in dead.reason
    assert len(smtp.messages) == 1


async def test_the_sender_organizes_when_the_host_has_no_email(start_hub, smtp) -> None:
    import json

    from tests.test_scheduling import post

    hub = await start(start_hub, smtp)
    payload = fixture_json("calendly/invitee_created.json")
    payload["payload"]["scheduled_event"]["event_memberships"][0]["user_email"] = None
    await post(hub, json.dumps(payload).encode())
    await hub.worker.drain()
    [vevent] = icalendar.Calendar.from_ical(calendar_part(smtp.messages[0]).get_content()).walk(
        "VEVENT"
    )
    assert str(vevent["ORGANIZER"]) == "mailto:bookings@example.org"
