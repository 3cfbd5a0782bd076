"""Inxmail Commerce as a destination, speaking the Calenso event set.

Each event is ``POST {api_url}/events`` with HTTP Basic auth (API id and secret, sent
pre-emptively) and a body ``{"event", "transactionId", "payload", "attachments"}``. The event
type must exist in the Inxmail space under that id. ``transactionId`` is the delivery id,
stable across retries (Inxmail de-duplicates on it; if a space ignores it, nothing breaks).
"""

from __future__ import annotations

import base64
import functools
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
from pydantic import AnyHttpUrl, ConfigDict, Field, field_validator

from hub import hookimpl
from hub.connector import (
    ActionConfig,
    ConnectorContext,
    Delivery,
    DeliveryResult,
    DestinationConfig,
    DestinationConnector,
)
from hub.errors import PermanentDelivery
from hub.ics import invitation
from hub.model import NOTIFICATION_TYPES, Booking, BookingEvent, Person, booking_uuid, utc_iso
from hub.outbound import post_json
from hub.secrets import Credential
from hub.templates import Template, TemplateFailed, compile_template
from hub.units import Duration

CUSTOMER = "calenso.booking.inform-customer"
PARTNER = "calenso.booking.inform-partner"
REMIND = "calenso.booking.remind-customer"
REBOOK_CUSTOMER = "calenso.booking.rebook.inform-customer"
REBOOK_PARTNER = "calenso.booking.rebook.inform-partner"
CANCEL_CUSTOMER = "calenso.booking.cancel.inform-customer"
CANCEL_PARTNER = "calenso.booking.cancel.inform-partner"
SURVEY = "calenso.smart-action.survey-after-appointment.inform-customer"
BEFORE = "calenso.smart-action.notification-before-appointment.inform-customer"
THANK_YOU = "calenso.smart-action.thank-you-after-appointment.inform-customer"

# The ten events of the Calenso set.
EVENTS = (
    CUSTOMER,
    PARTNER,
    REMIND,
    REBOOK_CUSTOMER,
    REBOOK_PARTNER,
    CANCEL_CUSTOMER,
    CANCEL_PARTNER,
    SURVEY,
    BEFORE,
    THANK_YOU,
)

# What a route sends when its action names no event.
DEFAULT_EVENTS = {
    "booking_confirmed": (CUSTOMER, PARTNER),
    "booking_rescheduled": (REBOOK_CUSTOMER, REBOOK_PARTNER),
    "booking_cancelled": (CANCEL_CUSTOMER, CANCEL_PARTNER),
    "before_meeting_starts": (REMIND,),
    "after_meeting_ends": (SURVEY,),
}

# Events that only make sense for one event type.
ONLY_FOR = {
    REBOOK_CUSTOMER: "booking_rescheduled",
    REBOOK_PARTNER: "booking_rescheduled",
    CANCEL_CUSTOMER: "booking_cancelled",
    CANCEL_PARTNER: "booking_cancelled",
}

# Events that carry the booking's Termin.ics, as in the Calenso set.
WITH_ATTACHMENT = {CUSTOMER, PARTNER, REMIND, REBOOK_CUSTOMER, REBOOK_PARTNER, BEFORE}


class InxmailConfig(DestinationConfig):
    api_url: AnyHttpUrl = Field(
        description="e.g. https://<space>.api.inxmail-commerce.com/api-service/v1"
    )
    api_id: str = Field(min_length=1, description="API id (HTTP Basic user)")
    api_secret: Credential = Field(description="API secret (HTTP Basic password)")
    secret_expires: date | None = Field(
        None, description="Expiry date of the API secret; deliveries stop after it"
    )
    language: str | None = Field("de", description="customer.language sent with each event")
    warn_before_expiry: Duration = Field(
        timedelta(days=14), description="Warn this long before secret_expires"
    )


class InxmailAction(ActionConfig):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    event: str | list[str] | None = Field(
        None, description="Calenso event(s) to send; by default chosen from the event type"
    )
    title: Template | None = Field(
        None, description="appointment.title, a template (default: meeting name: client name)"
    )
    description: Template | None = Field(
        None, description="appointment.description, a template (default: the meeting notes)"
    )

    @field_validator("title", "description", mode="before")
    @classmethod
    def _template(cls, value: Any) -> Any:
        return compile_template(value) if isinstance(value, str) else value

    def events(self, event_type: str) -> tuple[str, ...]:
        if self.event is None:
            return DEFAULT_EVENTS.get(event_type, ())
        return (self.event,) if isinstance(self.event, str) else tuple(self.event)


class Inxmail(DestinationConnector):
    name = "inxmail"
    config_model = InxmailConfig
    action_model = InxmailAction
    config: InxmailConfig

    def __init__(self, destination: str, config: InxmailConfig, context: ConnectorContext):
        super().__init__(destination, config, context)
        credentials = f"{config.api_id}:{config.api_secret.get_secret_value()}".encode()
        # Sent pre-emptively with every request, as Inxmail expects.
        self._authorization = "Basic " + base64.b64encode(credentials).decode()
        self._url = str(config.api_url).rstrip("/") + "/events"

    @classmethod
    def check(cls, config: InxmailConfig, now: float) -> list[str]:  # type: ignore[override]
        expires = config.secret_expires
        if expires is None:
            return []
        today = datetime.fromtimestamp(now, UTC).date()
        if today > expires:
            return [
                f"the API secret expired on {expires.isoformat()}; "
                "nothing is sent until it is replaced"
            ]
        if today >= expires - config.warn_before_expiry:
            return [f"the API secret expires on {expires.isoformat()}; set a new one before then"]
        return []

    @classmethod
    def unsupported(cls, event_type: str, action: InxmailAction) -> str | None:  # type: ignore[override]
        if event_type == "invite_replied" or event_type in NOTIFICATION_TYPES:
            return "Calenso events are about bookings, and this event carries none"
        names = action.events(event_type)
        if not names:
            return (
                "no Calenso event is chosen for it by default; name one with `event:` "
                f"(defaults exist for {', '.join(DEFAULT_EVENTS)})"
            )
        for name in names:
            if name not in EVENTS:
                return f"{name!r} is not a Calenso event (known: {', '.join(EVENTS)})"
            if ONLY_FOR.get(name, event_type) != event_type:
                return f"{name} is sent for {ONLY_FOR[name]} only"
        return None

    def plan(self, event: BookingEvent, action: InxmailAction) -> list[dict[str, Any]]:  # type: ignore[override]
        message: dict[str, Any] = {}
        if action.title is not None or action.description is not None:
            # the action's templates travel with the message
            message["action"] = {"to": action.to}
            for key, template in (("title", action.title), ("description", action.description)):
                if template is not None:
                    message["action"][key] = template.source
        return [{"event": name, **message} for name in action.events(event.type)]

    async def deliver(self, delivery: Delivery) -> DeliveryResult:
        config = self.config
        now = self.context.clock.now()
        if (
            config.secret_expires
            and datetime.fromtimestamp(now, UTC).date() > config.secret_expires
        ):
            raise PermanentDelivery(
                f"the Inxmail API secret of {self.destination!r} expired on "
                f"{config.secret_expires.isoformat()}; set a new one in hub.yaml"
            )
        action = _stored_action(delivery.message.get("action", {"to": ""}))
        event, memo = _stored_event(delivery)
        try:
            body = build_event(
                delivery.message["event"], event, config, delivery.id, now, action, memo=memo
            )
        except TemplateFailed as error:
            # the booking lacks what a template uses: fix the template, then replay
            raise PermanentDelivery(f"a template of the route failed: {error}") from error
        return await post_json(
            self.context.poster(self.config.deny_private_networks),
            self._url,
            body,
            now=now,
            headers={"Authorization": self._authorization},
            deny_private_networks=config.deny_private_networks,
        )


def _stored_action(stored: Any) -> InxmailAction:
    """The action a message carries, its templates compiled: once per distinct action, as
    compiling (and trying) a template costs far more than the message it fills."""
    key = tuple(stored.items()) if isinstance(stored, dict) else None
    try:
        hash(key)
    except TypeError:  # not plain values: validated (and refused) on its own
        key = None
    return InxmailAction.model_validate(stored) if key is None else _compiled_action(key)


@functools.lru_cache(maxsize=256)
def _compiled_action(items: tuple[tuple[str, Any], ...]) -> InxmailAction:
    return InxmailAction.model_validate(dict(items))


def _names(person: Person) -> tuple[str | None, str | None]:
    if person.first_name or person.last_name:
        return person.first_name, person.last_name
    first, _, last = (person.name or "").partition(" ")
    return first or None, last or None


def _customer(booking: Booking, language: str | None) -> dict[str, Any]:
    client = booking.client
    prename, lastname = _names(client)
    return {
        "id": client.id or client.email,
        "uuid": booking_uuid(f"person:{client.email or client.id}"),
        "prename": prename,
        "lastname": lastname,
        "email": client.email,
        "language": language,
        "salutation": None,
    }


def _worker(booking: Booking) -> dict[str, Any]:
    host = booking.host or Person()
    prename, lastname = _names(host)
    return {
        "id": host.id or host.email or "",
        "uuid": booking_uuid(f"person:{host.email or host.id or 'unknown host'}"),
        "full_name": host.name,
        "prename": prename,
        "lastname": lastname,
        "email": host.email,
    }


def _appointment(
    booking: Booking, event: BookingEvent, action: InxmailAction | None = None
) -> dict[str, Any]:
    client_name = booking.client.name or booking.client.email
    remarks = "\n".join(f"{a.question}: {a.answer}" for a in booking.answers if a.answer)
    title = f"{booking.meeting.name or 'Appointment'}: {client_name}"
    description = booking.notes
    if action is not None and action.title is not None:
        title = action.title.render(event)
    if action is not None and action.description is not None:
        description = action.description.render(event)
    return {
        "id": booking.id,
        "start": utc_iso(booking.start),
        "end": utc_iso(booking.end),
        "title": title,
        "description": description,
        "uuid": booking.uid,
        "remarks": remarks or None,
        "url": booking.urls.get("event"),
        "rebook_reason": None,
        "cancellation_reason": booking.cancellation.reason if booking.cancellation else None,
    }


# The latest events delivered, by the bytes of their stored JSON: validated, with what
# their messages share (Termin.ics). An event's messages (customer, partner, …) come from
# one stored event and are mostly sent one after the other.
_LATEST: dict[bytes, tuple[BookingEvent, dict[str, Any]]] = {}
_LATEST_KEPT = 64
_PLAIN_JSON = (
    orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)


def _stored_event(delivery: Delivery) -> tuple[BookingEvent, dict[str, Any]]:
    """The delivery's event, validated once for all the deliveries of the same stored bytes
    (the same bytes, the same event), and its memo. An event stored with other than plain
    JSON values is validated on its own."""
    try:
        key = orjson.dumps(delivery.data, option=_PLAIN_JSON)
    except TypeError:
        return delivery.event, {}
    latest = _LATEST.get(key)
    if latest is None:
        # validated from the values, not the text: the provider's raw payload it carries
        # is then kept as it is rather than built again from JSON
        latest = delivery.event, {}  # refused here as ever if it does not validate
        if len(_LATEST) >= _LATEST_KEPT:
            del _LATEST[next(iter(_LATEST))]
        _LATEST[key] = latest
    return latest


def _ics_attachment(
    booking: Booking, stamp: datetime, memo: dict[str, Any] | None = None
) -> dict[str, str]:
    content = memo.get("ics") if memo is not None else None
    if content is None:
        ics = invitation(booking, stamp=stamp, sequence=booking.sequence)
        content = base64.b64encode(ics).decode()
        if memo is not None:
            memo["ics"] = content
    return {"filename": "Termin.ics", "content-type": "text/calendar", "content": content}


def build_event(
    name: str,
    event: BookingEvent,
    config: InxmailConfig,
    transaction_id: str,
    now: float,
    action: InxmailAction | None = None,
    *,
    memo: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The body of one Calenso event about ``event``. ``memo`` keeps what the event's other
    messages share (its invitation), for them to take rather than make again."""
    booking = event.booking
    if booking is None:
        raise PermanentDelivery(f"{name} needs a booking, and the {event.type} event has none")
    appointment = _appointment(booking, event, action)
    payload: dict[str, Any] = {
        "customer": _customer(booking, config.language),
        "worker": _worker(booking),
        "appointment": appointment,
    }
    if name in (REBOOK_CUSTOMER, REBOOK_PARTNER):
        original = event.original
        if original is not None:
            payload["original_appointment"] = _appointment(original, event)
            if original.cancellation is not None:
                appointment["rebook_reason"] = original.cancellation.reason
        appointment["cancellation_reason"] = None
    if name == CANCEL_PARTNER:
        cancelled = booking.cancellation
        appointment["deleted"] = utc_iso(
            cancelled.at if cancelled and cancelled.at else event.occurred_at
        )
    body: dict[str, Any] = {"event": name, "transactionId": transaction_id, "payload": payload}
    if name in WITH_ATTACHMENT:
        # DTSTAMP: when this version of the booking came to be
        body["attachments"] = [_ics_attachment(booking, event.occurred_at, memo)]
    return body


@hookimpl
def register_destinations() -> list[type[DestinationConnector]]:
    return [Inxmail]
