"""A booking whose values cannot go into a mail fails alone: the mail circuit stays
closed and everyone else's invitation goes out at once."""

from __future__ import annotations

import json

import pytest

from connectors.email_invite import LINE_BREAKS, plain_text
from tests.conftest import fixture_json
from tests.test_email_invite import calendar_part, smtp, start

__all__ = ["smtp"]

HOSTILE = ["\u2028", "\u0085", "\x0b", "\x0c", "\x1c", "\u2029"]


def _booking(i: int, name: str) -> bytes:
    payload = fixture_json("calendly/invitee_created.json")
    invitee = payload["payload"]
    invitee["uri"] = f"{invitee['uri']}-{i}"
    invitee["email"] = f"client{i}@example.org"
    invitee["name"] = name
    return json.dumps(payload).encode()


def test_every_line_break_python_knows_is_refused() -> None:
    found = {chr(c) for c in range(0x110000) if len(f"a{chr(c)}b".splitlines()) > 1}
    assert found == LINE_BREAKS


@pytest.fixture
def subject_has_client_name(monkeypatch):
    from tests import test_email_invite

    action = {**test_email_invite.ACTION, "email_subject": "Your meeting, {{ client.name }}"}
    monkeypatch.setattr(test_email_invite, "ACTION", action)


async def test_poisoned_names_dead_letter_alone_and_the_circuit_stays_closed(
    start_hub, smtp, subject_has_client_name
) -> None:
    hub = await start(start_hub, smtp)
    poisoned = [
        _booking(i, f"Eve{HOSTILE[i % len(HOSTILE)]}Bcc: x@evil.example") for i in range(12)
    ]
    good = [_booking(100 + i, f"Client {i}") for i in range(20)]
    for body in [*poisoned, *good]:
        assert (await hub.post_calendly(body)).status == 202
    await hub.worker.drain()  # the clock never moves: nothing waits for a retry
    assert sorted(m["Subject"] for m in smtp.messages) == sorted(
        f"Your meeting, Client {i}" for i in range(20)
    )
    dead = await hub.store.dead_letters()
    assert len(dead) == 12
    # a content error, and the reason names no personal data
    assert {d.reason for d in dead} == {"the subject spans several lines"}
    [state] = await hub.store.destination_states(["mail"])
    assert (state.state, state.window_failed) == ("closed", 0)


def test_markup_escaped_into_html_stays_out_of_the_text() -> None:
    html = "<p>Hello &lt;a href=&quot;https://x.example&quot;&gt;Eve&lt;/a&gt; &amp; Co</p>"
    assert plain_text(html) == "Hello Eve & Co"


async def test_a_booker_name_with_markup_reaches_neither_text_part_nor_ics(start_hub, smtp) -> None:
    import icalendar

    hub = await start(start_hub, smtp)
    body = _booking(1, '<a href="https://phish.example">Eve</a>')
    payload = json.loads(body)
    payload["payload"]["scheduled_event"]["name"] = "<b>Consult</b>"
    assert (await hub.post_calendly(json.dumps(payload).encode())).status == 202
    await hub.worker.drain()
    [message] = smtp.messages
    text = message.get_body(("plain",)).get_content()
    assert "<a" not in text and "Hello Eve" in text
    [vevent] = icalendar.Calendar.from_ical(calendar_part(message).get_content()).walk("VEVENT")
    assert str(vevent["DESCRIPTION"]) == "Join: Consult"
