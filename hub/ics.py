"""iCalendar invitations (RFC 5545 / RFC 5546) for a canonical booking."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from icalendar import Calendar, Event, vCalAddress

from hub.model import Booking, Person

__all__ = ["invitation"]

PRODID = "-//hub//scheduling gateway//EN"


def _address(person: Person, role: str, *, rsvp: bool) -> vCalAddress:
    return vCalAddress.new(
        f"mailto:{person.email}",
        cn=person.name or None,
        role=role,
        partstat="NEEDS-ACTION" if rsvp else None,
        rsvp=rsvp or None,
    )


def invitation(
    booking: Booking,
    *,
    stamp: datetime,
    method: Literal["REQUEST", "CANCEL"] = "REQUEST",
    sequence: int = 0,
    summary: str | None = None,
) -> bytes:
    """The ``text/calendar`` body of an invitation to (or cancellation of) ``booking``.

    The UID is the booking's stable uid, so every later version (a reschedule with a
    higher ``sequence``, a CANCEL) updates the same entry in the attendee's calendar.
    Times are written in UTC.
    """
    attendees = (
        [_address(booking.client, "REQ-PARTICIPANT", rsvp=True)] if booking.client.email else []
    )
    attendees += [_address(g, "OPT-PARTICIPANT", rsvp=True) for g in booking.guests if g.email]
    host = booking.host
    event = Event.new(
        uid=f"{booking.uid}@hub",
        stamp=stamp,
        start=booking.start,
        end=booking.end,
        summary=summary or booking.meeting.name or "Appointment",
        description=booking.notes,
        location=booking.location.value if booking.location else None,
        organizer=_address(host, "CHAIR", rsvp=False) if host and host.email else None,
        attendees=attendees or None,
        sequence=sequence,
        status="CANCELLED" if method == "CANCEL" else "CONFIRMED",
    )
    calendar = Calendar.new(prodid=PRODID, method=method, subcomponents=[event])
    return calendar.to_ical()
