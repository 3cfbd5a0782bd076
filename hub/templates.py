"""Templates in action fields, with the NeetoCal variables ops teams know.

    {{booking.id}} {{meeting.name}} {{meeting.scheduling_url}}
    {{client.name}} {{client.first_name}} {{client.last_name}} {{client.email}}
    {{client.starts_at}} {{client.ends_at}}   in the client's time zone
    {{host.name}} {{host.email}} {{host.starts_at}} {{host.ends_at}}   in the host's time zone
    {{location}} {{event.type}} {{booking.ics_url}} (the invitation, when server.public_url
    and server.ics_secret are set)

Rendered in jinja2's sandbox. A template is compiled and tried on a sample booking when
hub.yaml is loaded, so a syntax error or an unknown variable is reported then.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from hub.model import Booking, BookingEvent, Person, booking_uuid

__all__ = ["Template", "TemplateFailed", "compile_template", "local_time", "variables"]

_ENVIRONMENT = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
# For HTML: the booking's values are escaped, so a name cannot carry markup into the mail.
_HTML_ENVIRONMENT = SandboxedEnvironment(undefined=StrictUndefined, autoescape=True)
TIME_FORMAT = "%Y-%m-%d %H:%M %Z"


def local_time(moment: datetime, zone: str | None) -> str:
    """``2026-12-03 10:30 CET``: the moment in a time zone (UTC if none or unknown)."""
    try:
        tz = ZoneInfo(zone) if zone else UTC
    except (ZoneInfoNotFoundError, ValueError):
        tz = UTC
    return moment.astimezone(tz).strftime(TIME_FORMAT)


def _person(person: Person | None, booking: Booking, zone: str | None) -> dict[str, Any]:
    person = person or Person()
    return {
        "name": person.name,
        "first_name": person.first_name,
        "last_name": person.last_name,
        "email": person.email,
        "starts_at": local_time(booking.start, zone),
        "ends_at": local_time(booking.end, zone),
    }


def variables(event: BookingEvent) -> dict[str, Any]:
    booking = event.booking
    reply = event.reply.model_dump(mode="json") if event.reply else None
    if booking is None:
        return {"event": {"type": event.type, "id": event.id}, "reply": reply}
    host_zone = booking.host.time_zone if booking.host else None
    return {
        "booking": {
            "id": booking.id,
            "uid": booking.uid,
            "status": booking.status,
            "ics_url": booking.urls.get("ics"),
        },
        "meeting": booking.meeting.model_dump(),
        "client": _person(booking.client, booking, booking.client.time_zone or booking.time_zone),
        "host": _person(booking.host, booking, host_zone),
        "location": booking.location.value if booking.location else None,
        "event": {"type": event.type, "id": event.id},
        "reply": reply,
    }


class TemplateFailed(ValueError):
    """A template could not be rendered for an event (it uses what the booking lacks)."""


class Template:
    def __init__(self, source: str, *, html: bool = False) -> None:
        self.source = source
        self.html = html
        self._template = (_HTML_ENVIRONMENT if html else _ENVIRONMENT).from_string(source)

    def render(self, event: BookingEvent) -> str:
        try:
            return self._template.render(variables(event))
        except Exception as error:  # whatever the template's own expressions raise
            raise TemplateFailed(f"{self.source!r}: {type(error).__name__}: {error}") from error


def _sample() -> BookingEvent:
    start = datetime(2026, 1, 1, 9, tzinfo=UTC)
    person = Person(name="Ada Lovelace", first_name="Ada", last_name="Lovelace", email="a@b.c")
    booking = Booking(
        id="sample",
        uid=booking_uuid("sample"),
        start=start,
        end=start,
        client=person,
        host=person,
    )
    return BookingEvent(
        id="sample",
        type="booking_confirmed",
        source="sample",
        inbound_event_id="sample",
        occurred_at=start,
        received_at=start,
        booking=booking,
    )


def compile_template(source: str, *, html: bool = False) -> Template:
    """Raises ValueError saying what is wrong with the template. With ``html``, the values
    it puts in are HTML-escaped."""
    try:
        template = Template(source, html=html)
    except TemplateError as error:
        raise ValueError(f"template {source!r}: {error}") from None
    try:
        template.render(_sample())
    except TemplateFailed as error:
        known = ", ".join(_names(variables(_sample())))
        raise ValueError(f"template {source!r}: {error.__cause__} (variables: {known})") from None
    return template


def _names(values: dict[str, Any], prefix: str = "") -> list[str]:
    """Every variable a template may use, as dotted names."""
    names = []
    for name, value in values.items():
        if isinstance(value, dict):
            names += _names(value, f"{prefix}{name}.")
        else:
            names.append(f"{prefix}{name}")
    return names
