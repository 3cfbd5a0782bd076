"""Golden tests of the hub's own invitations (``hub/ics.py``).

Every invitation is read back with two independent parsers, icalendar and vobject, and
each property is checked. icalendar also stays the reference: an invitation built with
its ``Event.new`` API carries the same properties. Hostile values (separators, line
breaks of every kind, control characters, very long lines in several scripts) must come
back as the text they stand for, without adding a property or a line, and every physical
line is at most 75 octets of whole UTF-8 sequences.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone

import icalendar
import pytest
import vobject

from hub.ics import invitation
from hub.model import Booking, Location, Meeting, Person, booking_uuid

STAMP = datetime(2026, 11, 20, 9, 0, 5, 123456, tzinfo=UTC)
START = datetime(2026, 12, 1, 10, 30, tzinfo=timezone(timedelta(hours=1)))  # 09:30 UTC


def make_booking(**changes) -> Booking:
    fields = {
        "id": "b-1",
        "uid": booking_uuid("b-1"),
        "meeting": Meeting(name="Beratung, Erstgespräch; 45 min"),
        "start": START,
        "end": START + timedelta(minutes=45),
        "client": Person(name="Nora Weber", email="Nora.Weber@example.org"),
        "host": Person(name="Jan Frei", email="jan.frei@example.org"),
        "guests": [
            Person(name="Lea Brunner", email="lea@example.org"),
            Person(email="nora.weber@example.org"),  # the client again: one attendee
        ],
        "location": Location(value="Seefeldstrasse 5, 8008 Zürich; 2. Stock \\ links"),
        "notes": "Bitte Unterlagen mitbringen.\nDanke!",
        "sequence": 2,
    }
    return Booking(**{**fields, **changes})


def reference(booking: Booking, *, method: str, description: str | None) -> bytes:
    """The same invitation through icalendar's own API: the reference."""

    def address(person: Person, role: str, rsvp: bool) -> icalendar.vCalAddress:
        return icalendar.vCalAddress.new(
            f"mailto:{person.email}",
            cn=person.name or None,
            role=role,
            partstat="NEEDS-ACTION" if rsvp else None,
            rsvp=rsvp or None,
        )

    attendees = [address(booking.client, "REQ-PARTICIPANT", True)]
    attendees += [address(g, "OPT-PARTICIPANT", True) for g in booking.guests[:1]]
    event = icalendar.Event.new(
        uid=f"{booking.uid}@hub",
        stamp=STAMP,
        start=booking.start.astimezone(UTC),  # the documented behaviour: times in UTC
        end=booking.end.astimezone(UTC),
        summary=booking.meeting.name,
        description=description,
        location=booking.location.value if booking.location else None,
        organizer=address(booking.host, "CHAIR", False),
        attendees=attendees,
        sequence=booking.sequence,
        status="CANCELLED" if method == "CANCEL" else "CONFIRMED",
    )
    return icalendar.Calendar.new(
        prodid="-//hub//scheduling gateway//EN", method=method, subcomponents=[event]
    ).to_ical()


def properties(ics: bytes) -> dict[str, list[tuple[str, dict[str, str]]]]:
    """Each property of the VEVENT and the calendar's METHOD, as icalendar reads them:
    name → [(value, parameters)], times in UTC."""
    calendar = icalendar.Calendar.from_ical(ics)
    [vevent] = calendar.walk("VEVENT")
    found: dict[str, list[tuple[str, dict[str, str]]]] = {"METHOD": [(str(calendar["METHOD"]), {})]}
    for name, value in vevent.property_items(recursive=False):
        if name in ("BEGIN", "END"):
            continue
        text = value.dt.astimezone(UTC).isoformat() if hasattr(value, "dt") else str(value)
        found.setdefault(name, []).append((text, dict(value.params)))
    return found


def physical_lines(ics: bytes) -> list[bytes]:
    assert ics.endswith(b"\r\n")
    lines = ics[:-2].split(b"\r\n")
    for line in lines:
        assert len(line) <= 75, line
        line.decode()  # whole UTF-8 sequences only: a split one does not decode
        assert b"\n" not in line and b"\r" not in line
    return lines


def logical_lines(ics: bytes) -> list[str]:
    """Content lines, unfolded."""
    unfolded = ics.replace(b"\r\n ", b"")
    return unfolded.decode().split("\r\n")[:-1]


@pytest.mark.parametrize("method", ["REQUEST", "CANCEL"])
def test_every_property_matches_the_icalendar_reference(method) -> None:
    booking = make_booking(status="cancelled" if method == "CANCEL" else "active")
    ours = invitation(booking, stamp=STAMP)
    theirs = reference(booking, method=method, description=booking.notes)
    assert properties(ours) == properties(theirs)
    physical_lines(ours)


def test_every_property_reads_back_with_icalendar() -> None:
    ics = invitation(make_booking(), stamp=STAMP)
    calendar = icalendar.Calendar.from_ical(ics)
    assert (calendar["VERSION"], calendar["PRODID"], calendar["METHOD"]) == (
        "2.0",
        "-//hub//scheduling gateway//EN",
        "REQUEST",
    )
    [vevent] = calendar.walk("VEVENT")
    assert vevent["UID"] == f"{booking_uuid('b-1')}@hub"
    assert vevent["SEQUENCE"] == 2
    assert vevent["STATUS"] == "CONFIRMED"
    assert vevent["SUMMARY"] == "Beratung, Erstgespräch; 45 min"
    assert vevent["DESCRIPTION"] == "Bitte Unterlagen mitbringen.\nDanke!"
    assert vevent["LOCATION"] == "Seefeldstrasse 5, 8008 Zürich; 2. Stock \\ links"
    assert vevent["DTSTART"].dt == datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    assert vevent["DTEND"].dt == datetime(2026, 12, 1, 10, 15, tzinfo=UTC)
    assert vevent["DTSTAMP"].dt == datetime(2026, 11, 20, 9, 0, 5, tzinfo=UTC)
    organizer = vevent["ORGANIZER"]
    assert str(organizer) == "mailto:jan.frei@example.org"
    assert dict(organizer.params) == {"CN": "Jan Frei", "ROLE": "CHAIR"}
    assert [(str(a), dict(a.params)) for a in vevent["ATTENDEE"]] == [
        (
            "mailto:Nora.Weber@example.org",
            {
                "CN": "Nora Weber",
                "PARTSTAT": "NEEDS-ACTION",
                "ROLE": "REQ-PARTICIPANT",
                "RSVP": "TRUE",
            },
        ),
        (
            "mailto:lea@example.org",
            {
                "CN": "Lea Brunner",
                "PARTSTAT": "NEEDS-ACTION",
                "ROLE": "OPT-PARTICIPANT",
                "RSVP": "TRUE",
            },
        ),
    ]


def test_every_property_reads_back_with_vobject() -> None:
    ics = invitation(make_booking(status="cancelled", sequence=3), stamp=STAMP)
    calendar = vobject.readOne(ics.decode())
    assert (calendar.version.value, calendar.prodid.value, calendar.method.value) == (
        "2.0",
        "-//hub//scheduling gateway//EN",
        "CANCEL",
    )
    event = calendar.vevent
    assert event.uid.value == f"{booking_uuid('b-1')}@hub"
    assert int(event.sequence.value) == 3
    assert event.status.value == "CANCELLED"
    assert event.summary.value == "Beratung, Erstgespräch; 45 min"
    assert event.description.value == "Bitte Unterlagen mitbringen.\nDanke!"
    assert event.location.value == "Seefeldstrasse 5, 8008 Zürich; 2. Stock \\ links"
    assert event.dtstart.value == datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    assert event.dtend.value == datetime(2026, 12, 1, 10, 15, tzinfo=UTC)
    assert event.dtstamp.value == datetime(2026, 11, 20, 9, 0, 5, tzinfo=UTC)
    assert event.organizer.value == "mailto:jan.frei@example.org"
    assert event.organizer.params == {"CN": ["Jan Frei"], "ROLE": ["CHAIR"]}
    assert [(a.value, a.params["ROLE"], a.params["RSVP"]) for a in event.attendee_list] == [
        ("mailto:Nora.Weber@example.org", ["REQ-PARTICIPANT"], ["TRUE"]),
        ("mailto:lea@example.org", ["OPT-PARTICIPANT"], ["TRUE"]),
    ]


def test_optional_properties_and_the_fallback_organizer() -> None:
    booking = make_booking(host=None, location=None, notes=None, guests=[], meeting=Meeting())
    sender = Person(name="Praxis", email="bookings@example.org")
    ics = invitation(booking, stamp=STAMP, organizer=sender, method="REQUEST", sequence=7)
    [vevent] = icalendar.Calendar.from_ical(ics).walk("VEVENT")
    assert "DESCRIPTION" not in vevent and "LOCATION" not in vevent
    assert vevent["SUMMARY"] == "Appointment"
    assert vevent["SEQUENCE"] == 7
    assert str(vevent["ORGANIZER"]) == "mailto:bookings@example.org"
    assert isinstance(vevent["ATTENDEE"], icalendar.vCalAddress)  # the client alone
    nobody = invitation(booking, stamp=STAMP, summary="Call", description="")
    [vevent] = icalendar.Calendar.from_ical(nobody).walk("VEVENT")
    assert "ORGANIZER" not in vevent and vevent["SUMMARY"] == "Call"


HOSTILE = [
    # (what the booking says, what a reader must get back)
    ("a, b; c \\ d", "a, b; c \\ d"),
    ("line\r\nnext\rthird\nfourth", "line\nnext\nthird\nfourth"),
    ("x\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nUID:evil", "x\nEND:VEVENT\nBEGIN:VEVENT\nUID:evil"),
    ("para\u2028graph\u2029next\x85nel", "para\ngraph\nnext\nnel"),
    ("vt\x0bff\x0cfs\x1cgs\x1drs\x1e.", "vt\nff\nfs\ngs\nrs\n."),
    ("nul\x00bel\x07esc\x1b[31mdel\x7f.", "nulbelesc[31mdel."),
    ("tab\there", "tab\there"),
    ("\\n is not a newline, \\\\ nor \\;", "\\n is not a newline, \\\\ nor \\;"),
]


@pytest.mark.parametrize(("given", "expected"), HOSTILE)
def test_hostile_text_comes_back_as_it_was_meant(given, expected) -> None:
    booking = make_booking(location=Location(value=given))
    ics = invitation(booking, stamp=STAMP, summary=given, description=given)
    lines = physical_lines(ics)
    assert all(b"\x00" not in line and b"\x0b" not in line for line in lines)
    for raw in ("\u2028", "\u2029", "\x85", "\x0c", "\x1b"):
        assert raw not in ics.decode()
    names = [line.split(":")[0].split(";")[0] for line in logical_lines(ics)]
    assert names.count("BEGIN") == names.count("END") == 2
    assert names.count("UID") == 1
    [vevent] = icalendar.Calendar.from_ical(ics).walk("VEVENT")
    assert (vevent["SUMMARY"], vevent["DESCRIPTION"], vevent["LOCATION"]) == (expected,) * 3
    event = vobject.readOne(ics.decode()).vevent
    assert (event.summary.value, event.description.value, event.location.value) == (expected,) * 3


def rfc6868(value: str) -> str:
    """vobject leaves RFC 6868's caret escapes as they are; decode them for comparison."""
    out, chars = [], iter(value)
    for char in chars:
        if char == "^":
            following = next(chars)
            out.append({"n": "\n", "'": '"', "^": "^"}[following])
        else:
            out.append(char)
    return "".join(out)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ('Dr. "Doc" Weber, MD; PhD: ^_^', 'Dr. "Doc" Weber, MD; PhD: ^_^'),
        ("Nora\r\nX-INJECTED:1", "Nora\nX-INJECTED:1"),
        ("Nora\u2028Weber\x0b\x00", "Nora\nWeber\n"),
    ],
)
def test_hostile_names_stay_in_their_parameter(given, expected) -> None:
    booking = make_booking(client=Person(name=given, email="nora@example.org"), guests=[])
    ics = invitation(booking, stamp=STAMP)
    physical_lines(ics)
    assert not any(line.startswith("X-INJECTED") for line in logical_lines(ics))
    [vevent] = icalendar.Calendar.from_ical(ics).walk("VEVENT")
    attendee = vevent["ATTENDEE"]
    assert (str(attendee), attendee.params["CN"]) == ("mailto:nora@example.org", expected)
    event = vobject.readOne(ics.decode()).vevent
    assert rfc6868(event.attendee.params["CN"][0]) == expected


def test_a_hostile_address_adds_no_property() -> None:
    email = "nora@example.org\r\nATTENDEE:mailto:spy@evil.example\u2028 x"
    ics = invitation(make_booking(client=Person(email=email), guests=[]), stamp=STAMP)
    physical_lines(ics)
    [vevent] = icalendar.Calendar.from_ical(ics).walk("VEVENT")
    attendee = vevent["ATTENDEE"]  # one attendee, its address %-encoded
    assert str(attendee) == (
        "mailto:nora@example.org%0D%0AATTENDEE:mailto:spy@evil.example%E2%80%A8%20x"
    )
    assert len(vobject.readOne(ics.decode()).vevent.attendee_list) == 1


@pytest.mark.parametrize("offset", range(4))
@pytest.mark.parametrize("char", ["x", "é", "中", "🗓"])
def test_long_lines_fold_at_75_octets_between_utf8_sequences(char, offset) -> None:
    """Each width of character, shifted so that the 75-octet boundary falls on every byte
    of a sequence in turn."""
    text = "a" * offset + char * 400 + " end"
    ics = invitation(make_booking(), stamp=STAMP, summary=text, description=text * 3)
    lines = physical_lines(ics)
    folded = [line for line in lines if line.startswith(b" ")]
    assert len(folded) > 10
    # a line is cut short only where a whole sequence would not fit
    width = len(char.encode())
    for line, following in itertools.pairwise(lines):
        if following.startswith(b" "):
            assert len(line) > 75 - width, line
    [vevent] = icalendar.Calendar.from_ical(ics).walk("VEVENT")
    assert (vevent["SUMMARY"], vevent["DESCRIPTION"]) == (text, text * 3)
    event = vobject.readOne(ics.decode()).vevent
    assert (event.summary.value, event.description.value) == (text, text * 3)


def test_a_line_of_exactly_75_octets_is_not_folded() -> None:
    summary = "s" * (75 - len("SUMMARY:"))
    ics = invitation(make_booking(), stamp=STAMP, summary=summary)
    assert f"\r\nSUMMARY:{summary}\r\nDTSTART".encode() in ics
    longer = invitation(make_booking(), stamp=STAMP, summary=summary + "s")
    assert f"\r\nSUMMARY:{summary}\r\n s\r\nDTSTART".encode() in longer
