"""Calendly (API v2 webhooks) as a source.

Signature: ``Calendly-Webhook-Signature: t=<unix seconds>,v1=<hex>``, the HMAC-SHA256 of
``t + "." + raw body`` keyed by the subscription's signing key. Calendly retries any non-2xx
for 24 hours and then disables the subscription, so event names the hub does not handle are
accepted and ignored rather than refused.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import aiohttp
import structlog
from pydantic import AnyHttpUrl, Field, field_validator

from hub import hookimpl
from hub.connector import NormalizeContext, SourceConfig, SourceConnector
from hub.errors import NormalizeError, SignatureError
from hub.model import (
    Booking,
    BookingEvent,
    booking_uuid,
)
from hub.secrets import Credential, SigningKey
from hub.units import Duration

log = structlog.get_logger(__name__)

SIGNATURE_HEADER = "Calendly-Webhook-Signature"
# Events whose payload is an Invitee; the others are accepted and ignored.
INVITEE_EVENTS = (
    "invitee.created",
    "invitee.canceled",
    "invitee_no_show.created",
    "invitee_no_show.deleted",
)


class CalendlyConfig(SourceConfig):
    signing_key: SigningKey = Field(description="The webhook subscription's signing key")
    tolerance: Duration = Field(
        timedelta(seconds=180),
        description="Oldest (and furthest in the future) signature timestamp accepted",
    )
    reschedule_window: Duration = Field(
        timedelta(minutes=10),
        description="How long one half of a reschedule waits for the other; a cancelled "
        "half left alone is then a cancellation",
    )
    host_time_zone: str = Field(
        "UTC", description="The hosts' time zone (Calendly does not send it): host.starts_at"
    )
    api_token: Credential | None = Field(
        None,
        description="A Calendly API token: to fetch the scheduled event of a webhook that "
        "carries only its URI",
    )
    api_url: AnyHttpUrl = Field(
        "https://api.calendly.com",  # type: ignore[assignment]
        description="Calendly's API; replaces the origin of the event URIs fetched",
    )

    @field_validator("api_token", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value


def sign(key: str, timestamp: int, body: bytes) -> str:
    """The header value Calendly sends for ``body`` at ``timestamp``."""
    digest = hmac.new(key.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")
_EVENT_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")  # the last segment of a scheduled event URI


def _parse_header(value: str) -> tuple[int, list[bytes]]:
    timestamp, signatures = None, []
    for part in value.split(","):
        name, _, item = part.strip().partition("=")
        if name == "t" and _TIMESTAMP.fullmatch(item):
            timestamp = int(item)
        elif name == "v1" and _HEX_DIGEST.fullmatch(item):
            signatures.append(item.encode())
    if timestamp is None or not signatures:
        raise SignatureError(
            f"{SIGNATURE_HEADER} must look like t=<unix seconds>,v1=<64 hex digits>"
        )
    return timestamp, signatures


class Calendly(SourceConnector):
    name = "calendly"
    config_model = CalendlyConfig
    schema = "calendly/webhook.json"
    config: CalendlyConfig
    single_headers = (SIGNATURE_HEADER,)

    def __init__(self, source: str, config: CalendlyConfig) -> None:
        super().__init__(source, config)
        # the signing key's HMAC-SHA256 state, made once: each check continues a copy
        self._keyed = hmac.new(config.signing_key.get_secret_value().encode(), None, "sha256")

    def screen(self, headers: Mapping[str, str], now: float) -> None:
        self._signatures(headers, now)

    def _signatures(self, headers: Mapping[str, str], now: float) -> tuple[int, list[bytes]]:
        value = headers.get(SIGNATURE_HEADER)
        if not value:
            raise SignatureError(f"missing {SIGNATURE_HEADER} header")
        timestamp, signatures = _parse_header(value)
        tolerance = self.config.tolerance.total_seconds()
        if abs(now - timestamp) > tolerance:
            raise SignatureError(
                f"signature timestamp {timestamp} is more than {tolerance:g} s from now"
            )
        return timestamp, signatures

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        timestamp, signatures = self._signatures(headers, now)
        mac = self._keyed.copy()
        mac.update(b"%d.%s" % (timestamp, body))  # as ``sign`` signs it
        digest = mac.hexdigest().encode()
        if not any(hmac.compare_digest(digest, s) for s in signatures):
            raise SignatureError("signature does not match the body")

    def order_key(self, payload: dict[str, Any]) -> str | None:
        invitee = payload.get("payload")
        uri = invitee.get("uri") if isinstance(invitee, dict) else None
        return uri if isinstance(uri, str) else None

    def partition_key(self, payload: dict[str, Any]) -> str | None:
        # the new half of a reschedule goes where its old invitee's webhooks went
        old = _invitee_link(payload, "old_invitee")
        return old or self.order_key(payload)

    def linked_keys(self, payload: dict[str, Any]) -> list[str]:
        # the invitee a reschedule creates: its later webhooks follow this booking
        new = _invitee_link(payload, "new_invitee")
        if new:
            return [new]
        uri = self.order_key(payload)
        return [uri] if uri and _invitee_link(payload, "old_invitee") else []

    async def normalize(
        self, payload: dict[str, Any], context: NormalizeContext
    ) -> list[BookingEvent]:
        name = payload["event"]
        invitee = payload["payload"]
        if name not in INVITEE_EVENTS:
            log.info("calendly.ignored", event_id=context.inbound_event_id, calendly_event=name)
            return []
        ref = invitee["uri"]
        if not isinstance(invitee.get("scheduled_event"), dict):
            invitee = {**invitee, "scheduled_event": await self._scheduled_event(invitee, context)}

        def event(kind: str, booking: Booking, original: Booking | None = None) -> BookingEvent:
            return BookingEvent(
                id=context.event_id(0),
                type=kind,
                source=context.source,
                inbound_event_id=context.inbound_event_id,
                occurred_at=payload["created_at"],
                received_at=context.received_at,
                booking=booking,
                original=original,
                raw=payload,
            )

        window = self.config.reschedule_window
        if name == "invitee.created" and invitee.get("old_invitee"):
            # The new half of a reschedule: one booking_rescheduled, whichever half comes
            # first. The pair is named by the old invitee, which both halves know.
            old = invitee["old_invitee"]
            original = await context.bookings.by_ref(old)
            booking = self.booking(invitee, original.id if original else old)
            alone = event("booking_rescheduled", booking, original)
            outcome, partner = await context.bookings.pair(
                old, "created", alone, alone_ok=original is not None, window=window
            )
            if outcome in ("paired", "late") and partner is not None:
                # the cancelled half knew the booking's id when it was offered: keep it
                same = {"id": partner.booking.id, "uid": partner.booking.uid}
                return [
                    event("booking_rescheduled", booking.model_copy(update=same), partner.booking)
                ]
            return [alone] if outcome == "alone" else []

        known = await context.bookings.by_ref(ref)
        booking = self.booking(invitee, known.id if known else ref)
        if name == "invitee.created":
            return [event("booking_confirmed", booking)]
        if name == "invitee.canceled" and (
            invitee.get("rescheduled") or invitee.get("new_invitee")
        ):
            # The old half of a reschedule: no cancellation, unless its partner never comes.
            outcome, partner = await context.bookings.pair(
                ref,
                "cancelled",
                event("booking_cancelled", booking),
                alone_ok=False,
                window=window,
            )
            if outcome == "paired" and partner is not None:
                # the new half may have been offered before the booking was known: the id
                # is the one known now
                same = {"id": booking.id, "uid": booking.uid}
                return [
                    event("booking_rescheduled", partner.booking.model_copy(update=same), booking)
                ]
            log.info("calendly.reschedule_half", event_id=context.inbound_event_id, pairing=outcome)
            return []
        if name == "invitee.canceled":
            return [event("booking_cancelled", booking)]
        if name == "invitee_no_show.created":
            return [event("marked_no_show", booking.model_copy(update={"no_show": True}))]
        return [event("no_show_removed", booking)]

    async def _scheduled_event(
        self, invitee: Mapping[str, Any], context: NormalizeContext
    ) -> dict[str, Any]:
        """The scheduled event a webhook names only by URI, from Calendly's API:
        ``GET {api_url}/scheduled_events/{uuid}`` with the bearer token."""
        uri = invitee["event"]
        token = self.config.api_token
        if token is None or context.http is None:
            raise NormalizeError(
                f"the webhook names its scheduled event only by URI; set api_token on source "
                f"{self.source!r} so the hub can fetch it, then replay this dead letter"
            )
        uuid = uri.rstrip("/").rpartition("/")[2]
        if not _EVENT_ID.fullmatch(uuid):
            # ".." or an escaped slash would ask the API (with the token) for another path
            raise NormalizeError(
                "the webhook's scheduled event URI does not end in an id the hub can ask "
                "Calendly's API for (letters, digits, '-' and '_')"
            )
        url = f"{str(self.config.api_url).rstrip('/')}/scheduled_events/{uuid}"
        async with context.http.get(
            url,
            headers={"Authorization": f"Bearer {token.get_secret_value()}"},
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=15),
        ) as response:
            if response.status in (401, 403, 404):
                raise NormalizeError(
                    f"Calendly's API answered {response.status} for the scheduled event "
                    f"{uuid}; check the source's api_token, then replay"
                )
            if response.status != 200:  # anything else may pass: retried
                raise RuntimeError(f"Calendly's API answered {response.status}")
            found = await response.json(content_type=None)
        resource = found.get("resource") if isinstance(found, dict) else None
        if not isinstance(resource, dict) or not {"start_time", "end_time"} <= resource.keys():
            raise NormalizeError(f"Calendly's API gave no scheduled event for {uuid}")
        return {"uri": uri, **resource}

    def booking(self, invitee: Mapping[str, Any], booking_id: str) -> Booking:
        return booking_from_invitee(invitee, booking_id, host_time_zone=self.config.host_time_zone)


def _invitee_link(payload: dict[str, Any], name: str) -> str | None:
    invitee = payload.get("payload")
    value = invitee.get(name) if isinstance(invitee, dict) else None
    return value if isinstance(value, str) and value else None


def _person_from_membership(
    member: Mapping[str, Any], time_zone: str | None = None
) -> dict[str, Any]:
    name = member.get("user_name")
    first, _, last = (name or "").partition(" ")
    return {
        "id": member.get("user"),
        "name": name,
        "first_name": first or None,
        "last_name": last or None,
        "email": member.get("user_email"),
        "time_zone": time_zone,
    }


def booking_from_invitee(
    invitee: Mapping[str, Any], booking_id: str | None = None, *, host_time_zone: str | None = None
) -> Booking:
    """A canonical booking from a Calendly Invitee resource. ``booking_id`` is the stable id
    of the booking it is a version of (by default the invitee's own URI); ``host_time_zone``
    is the host's, which Calendly does not send.

    The booking is validated once, as a whole: what Calendly sent is checked there."""
    event = invitee["scheduled_event"]
    memberships = event.get("event_memberships") or []
    where = event.get("location") or None
    cancellation = invitee.get("cancellation")
    urls = {
        "event": event["uri"],
        "cancel": invitee.get("cancel_url"),
        "reschedule": invitee.get("reschedule_url"),
    }
    booking_id = booking_id or invitee["uri"]
    return Booking.model_validate(
        {
            "id": booking_id,
            "uid": booking_uuid(booking_id),
            "provider_ref": invitee["uri"],
            "status": "cancelled" if invitee["status"] == "canceled" else "active",
            "meeting": {"id": event.get("event_type"), "name": event.get("name")},
            "start": event["start_time"],
            "end": event["end_time"],
            "time_zone": invitee.get("timezone"),
            "location": {
                "type": where.get("type"),
                "value": where.get("join_url") or where.get("location"),
                "details": where.get("additional_info"),
            }
            if where
            else None,
            "client": {
                "id": invitee["uri"],
                "name": invitee.get("name")
                or " ".join(n for n in (invitee.get("first_name"), invitee.get("last_name")) if n)
                or None,
                "first_name": invitee.get("first_name"),
                "last_name": invitee.get("last_name"),
                "email": invitee["email"],
                "time_zone": invitee.get("timezone"),
                "phone": invitee.get("text_reminder_number"),
            },
            "host": _person_from_membership(memberships[0], host_time_zone)
            if memberships
            else None,
            "guests": [{"email": g["email"]} for g in event.get("event_guests") or []],
            "answers": [
                {
                    "question": qa["question"],
                    "answer": qa.get("answer"),
                    "position": qa.get("position"),
                }
                for qa in invitee.get("questions_and_answers") or []
            ],
            "cancellation": {
                "reason": cancellation.get("reason"),
                "by": cancellation.get("canceled_by"),
                "canceler_type": cancellation.get("canceler_type"),
                "at": cancellation.get("created_at"),
            }
            if cancellation
            else None,
            "urls": {k: v for k, v in urls.items() if v},
            "notes": event.get("meeting_notes_plain"),
        }
    )


@hookimpl
def register_sources() -> list[type[SourceConnector]]:
    return [Calendly]
