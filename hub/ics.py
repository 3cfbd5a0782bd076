"""iCalendar invitations (RFC 5545 / RFC 5546) for a canonical booking.

The hub writes its own invitations with a small serializer: every invitation has the same
handful of properties, so it writes them line by line, escapes each value by its type and
folds long lines at 75 octets without splitting a UTF-8 sequence. The tests read its output
back with icalendar and vobject.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from datetime import UTC, datetime
from typing import Literal

from hub.model import Booking, Person

__all__ = ["IcsLinks", "invitation"]

PRODID = "-//hub//scheduling gateway//EN"
LINE_OCTETS = 75  # RFC 5545 3.1: lines longer than this are folded

# Characters that end a line somewhere (str.splitlines, Unicode): in TEXT they become the
# escaped newline, so no reader sees a raw line break inside a value.
_BREAKS = "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
# Other control characters have no place in a value (RFC 5545 3.3.11 excludes CONTROL but
# HTAB): they are dropped.
_CONTROLS = "".join(chr(c) for c in (*range(0x20), 0x7F) if chr(c) not in _BREAKS + "\t")

_TEXT = {ord("\\"): "\\\\", ord(";"): "\\;", ord(","): "\\,"}
_TEXT |= {ord(c): "\\n" for c in _BREAKS} | dict.fromkeys(map(ord, _CONTROLS))
# RFC 6868 for parameter values: ^ → ^^, a line break → ^n, a double quote → ^'.
_PARAM = {ord("^"): "^^", ord('"'): "^'", ord("\t"): " "}
_PARAM |= {ord(c): "^n" for c in _BREAKS} | dict.fromkeys(map(ord, _CONTROLS))
# A URI (an attendee's mailto:) takes no escapes: what cannot stand in one is %-encoded.
_URI_UNSAFE = re.compile(f'[\\s"<>\\\\^`{{|}}{re.escape(_BREAKS + _CONTROLS)}]')
_CRLF_BEFORE_CR = re.compile(r"\r\n?")
# Whether a value holds anything its table changes (most hold nothing: kept as they are).
_TEXT_CHANGES = re.compile(f"[{re.escape(''.join(map(chr, _TEXT)))}]")
_PARAM_CHANGES = re.compile(f"[{re.escape(''.join(map(chr, _PARAM)))}]")


def _text(value: str) -> str:
    """A TEXT value (RFC 5545 3.3.11): backslash, semicolon, comma and line breaks
    escaped; a CRLF is one line break."""
    if _TEXT_CHANGES.search(value) is None:
        return value
    return _CRLF_BEFORE_CR.sub("\n", value).translate(_TEXT)


def _param(value: str) -> str:
    """A quoted parameter value (RFC 5545 3.2, RFC 6868)."""
    if _PARAM_CHANGES.search(value) is None:
        return f'"{value}"'
    return '"' + _CRLF_BEFORE_CR.sub("\n", value).translate(_PARAM) + '"'


def _uri(value: str) -> str:
    return _URI_UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m[0].encode()), value)


def _utc(moment: datetime) -> str:
    m = moment.astimezone(UTC)
    day, time = m.year * 10000 + m.month * 100 + m.day, m.hour * 10000 + m.minute * 100 + m.second
    return f"{day:08d}T{time:06d}Z"  # 20261203T093000Z


def _fold(data: bytes) -> bytes:
    """One encoded content line longer than 75 octets, folded into lines of at most 75
    octets (the leading space of a continuation counts), never inside a UTF-8 sequence."""
    parts = []
    start, width = 0, LINE_OCTETS
    while len(data) - start > width:
        cut = start + width
        while data[cut] & 0xC0 == 0x80:  # a continuation byte: cut before its sequence
            cut -= 1
        parts.append(data[start:cut])
        start, width = cut, LINE_OCTETS - 1
    parts.append(data[start:])
    return b"\r\n ".join(parts)


def _address(name: str, person: Person, role: str, *, rsvp: bool) -> str:
    params = f";CN={_param(person.name)}" if person.name else ""
    if rsvp:
        params += ";PARTSTAT=NEEDS-ACTION"
    params += f";ROLE={role}"
    if rsvp:
        params += ";RSVP=TRUE"
    return f"{name}{params}:mailto:{_uri(person.email or '')}"


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
    if description is None:
        description = booking.notes
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        f"PRODID:{PRODID}",
        f"METHOD:{method}",
        "BEGIN:VEVENT",
        f"SUMMARY:{_text(summary or booking.meeting.name or 'Appointment')}",
        f"DTSTART:{_utc(booking.start)}",
        f"DTEND:{_utc(booking.end)}",
        f"DTSTAMP:{_utc(stamp)}",
        f"UID:{_text(booking.uid)}@hub",
        f"SEQUENCE:{sequence}",
    ]
    seen = set()
    people = [(booking.client, "REQ-PARTICIPANT")]
    people += [(guest, "OPT-PARTICIPANT") for guest in booking.guests]
    for person, role in people:
        if person.email and person.email.lower() not in seen:  # each attendee once
            seen.add(person.email.lower())
            lines.append(_address("ATTENDEE", person, role, rsvp=True))
    if description:
        lines.append(f"DESCRIPTION:{_text(description)}")
    if booking.location and booking.location.value:
        lines.append(f"LOCATION:{_text(booking.location.value)}")
    host = booking.host if booking.host and booking.host.email else organizer
    if host and host.email:
        lines.append(_address("ORGANIZER", host, "CHAIR", rsvp=False))
    lines += [
        f"STATUS:{'CANCELLED' if method == 'CANCEL' else 'CONFIRMED'}",
        "END:VEVENT",
        "END:VCALENDAR",
    ]
    # each line CRLF-terminated; the few longer than 75 octets folded
    folded = [d if len(d) <= LINE_OCTETS else _fold(d) for d in map(str.encode, lines)]
    return b"\r\n".join(folded) + b"\r\n"


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
