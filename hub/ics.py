"""iCalendar invitations (RFC 5545 / RFC 5546) for a canonical booking."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime
from typing import Literal

from icalendar import Calendar, Event, vCalAddress

from hub.model import Booking, Person

__all__ = ["IcsLinks", "invitation"]

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
    method: Literal["REQUEST", "CANCEL"] | None = None,
    sequence: int | None = None,
    summary: str | None = None,
    description: str | None = None,
    organizer: Person | None = None,
) -> bytes:
    """The ``text/calendar`` body of an invitation to (or cancellation of) ``booking``.

    The organizer is the host, or ``organizer`` when the host has no email (RFC 5546 wants
    one in every REQUEST). The UID is the booking's stable uid, so every later version (a
    reschedule with a higher sequence, a CANCEL) updates the same entry in the attendee's
    calendar. By default the method follows the booking's status and the sequence is the
    booking's. Times are written in UTC.
    """
    if method is None:
        method = "CANCEL" if booking.status == "cancelled" else "REQUEST"
    if sequence is None:
        sequence = booking.sequence
    attendees, seen = [], set()
    people = [(booking.client, "REQ-PARTICIPANT")]
    people += [(guest, "OPT-PARTICIPANT") for guest in booking.guests]
    for person, role in people:
        if person.email and person.email.lower() not in seen:  # each attendee once
            seen.add(person.email.lower())
            attendees.append(_address(person, role, rsvp=True))
    host = booking.host if booking.host and booking.host.email else organizer
    event = Event.new(
        uid=f"{booking.uid}@hub",
        stamp=stamp,
        start=booking.start,
        end=booking.end,
        summary=summary or booking.meeting.name or "Appointment",
        description=description if description is not None else booking.notes,
        location=booking.location.value if booking.location else None,
        organizer=_address(host, "CHAIR", rsvp=False) if host and host.email else None,
        attendees=attendees or None,
        sequence=sequence,
        status="CANCELLED" if method == "CANCEL" else "CONFIRMED",
    )
    calendar = Calendar.new(prodid=PRODID, method=method, subcomponents=[event])
    return calendar.to_ical()


class IcsLinks:
    """Unguessable links to a booking's current invitation: ``/bookings/{token}.ics``, the
    token the booking's uid and an HMAC of it under a server secret (the file holds
    personal data, so the uid alone must not open it)."""

    def __init__(self, secret: bytes, public_url: str | None) -> None:
        self._secret = secret
        self.public_url = public_url.rstrip("/") if public_url else None

    def _mac(self, uid: str) -> str:
        digest = hmac.new(self._secret, uid.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:18]).decode()

    def token(self, uid: str) -> str:
        return f"{uid}.{self._mac(uid)}"

    def verify(self, token: str) -> str | None:
        """The uid a token is for, or None if it is not one of ours."""
        uid, _, mac = token.partition(".")
        if not uid or not hmac.compare_digest(mac.encode(), self._mac(uid).encode()):
            return None
        return uid

    def url(self, uid: str) -> str | None:
        if self.public_url is None:
            return None
        return f"{self.public_url}/bookings/{self.token(uid)}.ics"
