"""Auvious video appointments as a destination.

OAuth 2 client credentials: ``POST {base}/security/oauth/token?grant_type=client_credentials
&client_id=…&client_secret=…`` gives a bearer token, kept until shortly before it expires
and fetched again once when a request is refused with 401.

    booking_confirmed    POST   /api/appointments/              the id it returns is kept
    booking_rescheduled  PUT    /api/appointments/reschedule/   (created if none is kept)
    booking_cancelled    DELETE /api/appointments/{id}          (404: gone already)

The appointment id of each booking is kept in the destination's memory in the store, so
every worker knows it, and a retried create that finds it there does not create twice.
(A create whose answer is lost to a crash or a timeout before the id is kept is tried
again, and Auvious then has two appointments: the request carries the booking id in its
metadata to tell them apart.)
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import orjson
from pydantic import AnyHttpUrl, Field

from hub import hookimpl
from hub.connector import (
    ActionConfig,
    ConnectorContext,
    Delivery,
    DeliveryResult,
    DestinationConfig,
    DestinationConnector,
)
from hub.errors import PermanentDelivery, RetryableDelivery
from hub.model import Booking, BookingEvent
from hub.outbound import (
    RESPONSE_EXCERPT,
    check_public,
    parse_retry_after,
    redirect_refused,
    request_failed,
)
from hub.secrets import Credential
from hub.units import Duration

HANDLED = ("booking_confirmed", "booking_rescheduled", "booking_cancelled")
_MAX_BODY = 256 * 1024  # the most of an answer read


class AuviousConfig(DestinationConfig):
    base_url: AnyHttpUrl = Field(description="e.g. https://auvious.video")
    client_id: str = Field(min_length=1)
    client_secret: Credential
    application_id: str = Field(description="The Auvious application appointments belong to")
    locale: str = Field("en-GB", description="Locale of the appointments")
    token_margin: Duration = Field(
        timedelta(seconds=60), description="Fetch a new token this long before it expires"
    )


def iso_duration(seconds: float) -> str:
    """``PT45M``: an ISO 8601 duration in whole minutes (seconds if not whole)."""
    total = int(seconds)
    return f"PT{total // 60}M" if total % 60 == 0 else f"PT{total}S"


def _zulu(moment: datetime) -> str:
    """``2026-12-03T09:30:00Z``"""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


class Auvious(DestinationConnector):
    name = "auvious"
    config_model = AuviousConfig
    action_model = ActionConfig
    config: AuviousConfig

    def __init__(self, destination: str, config: AuviousConfig, context: ConnectorContext):
        super().__init__(destination, config, context)
        self._base = str(config.base_url).rstrip("/")
        self._token: str | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()
        self._memory = context.memory(destination) if context.store is not None else None

    @classmethod
    def unsupported(cls, event_type: str, action: ActionConfig) -> str | None:
        if event_type not in HANDLED:
            return f"Auvious appointments follow {', '.join(HANDLED)} only"
        return None

    async def deliver(self, delivery: Delivery) -> DeliveryResult:
        event = delivery.event
        booking = event.booking
        if booking is None or self._memory is None:
            raise PermanentDelivery(f"an appointment needs a booking; {event.type} has none")
        known = await self._memory.get(booking.id)
        if event.type == "booking_cancelled":
            if known is None:
                return DeliveryResult(details={"skipped": "no appointment for this booking"})
            status, _ = await self._call(
                "DELETE", f"/api/appointments/{known}", ok=frozenset({404})
            )
            await self._memory.delete(booking.id)
            return DeliveryResult(status=status)
        if event.type == "booking_rescheduled" and known is not None:
            body = {
                "id": known,
                "start": _zulu(booking.start),
                "duration": iso_duration((booking.end - booking.start).total_seconds()),
                "timezone": booking.time_zone or "UTC",
                "locale": self.config.locale,
            }
            status, _ = await self._call("PUT", "/api/appointments/reschedule/", body)
            return DeliveryResult(status=status)
        if known is not None:  # a retried create whose first try went through
            return DeliveryResult(details={"appointment": known})
        status, created = await self._call(
            "POST", "/api/appointments/", self._appointment(event, booking)
        )
        appointment = created.get("id") if isinstance(created, dict) else None
        if not appointment:
            raise PermanentDelivery("Auvious created an appointment but returned no id")
        await self._memory.set(booking.id, appointment)
        return DeliveryResult(status=status, details={"appointment": appointment})

    def _appointment(self, event: BookingEvent, booking: Booking) -> dict[str, Any]:
        client = booking.client
        first, last = client.first_name, client.last_name
        if not (first or last) and client.name:
            first, _, last = client.name.partition(" ")
        return {
            "applicationId": self.config.application_id,
            "customer": {
                "contact": {"primaryEmail": client.email, "primaryPhone": client.phone},
                "name": {"firstName": first, "lastName": last},
                "metadata": {"bookingId": booking.id},
            },
            "duration": iso_duration((booking.end - booking.start).total_seconds()),
            "start": _zulu(booking.start),
            "timezone": booking.time_zone or "UTC",
            "locale": self.config.locale,
            "title": booking.meeting.name or "Appointment",
            "notes": booking.notes,
            "metadata": {"bookingId": booking.id, "source": event.source},
        }

    async def _bearer(self, *, refused: str | None = None) -> str:
        """The current token; a new one if it expired, or if it is the one just refused
        (unless another delivery fetched a new one meanwhile)."""
        async with self._lock:
            now = self.context.clock.now()
            if self._token is None or now >= self._expires or self._token == refused:
                await self._fetch_token(now)
            assert self._token is not None
            return self._token

    async def _fetch_token(self, now: float) -> None:
        config = self.config
        params = {
            "grant_type": "client_credentials",
            "client_id": config.client_id,
            "client_secret": config.client_secret.get_secret_value(),
        }
        url = f"{self._base}/security/oauth/token"
        if config.deny_private_networks:
            await check_public(url)
        try:
            async with self.context.session(config.deny_private_networks).post(
                url, params=params, allow_redirects=False
            ) as response:
                text = (await response.content.read(_MAX_BODY)).decode(errors="replace")
                if 300 <= response.status < 400:
                    redirect_refused(
                        "the token endpoint", response.status, response.headers.get("Location"), ""
                    )
                if response.status in (400, 401, 403):
                    raise PermanentDelivery(
                        f"Auvious refused the client credentials ({response.status})",
                        status=response.status,
                        response=text[:RESPONSE_EXCERPT],
                    )
                if response.status != 200:
                    raise RetryableDelivery(
                        f"token endpoint answered {response.status}",
                        status=response.status,
                        response=text[:RESPONSE_EXCERPT],
                    )
                token = orjson.loads(text)
        except aiohttp.ClientError as error:
            raise request_failed(error, "token endpoint: ") from error
        except ValueError as error:
            raise RetryableDelivery("the token endpoint's answer is not JSON") from error
        if not isinstance(token, dict) or not token.get("access_token"):
            raise PermanentDelivery("the token endpoint's answer has no access_token")
        self._token = token["access_token"]
        lifetime = float(token.get("expires_in", 300))
        self._expires = now + max(lifetime - config.token_margin.total_seconds(), 0)

    async def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        ok: frozenset[int] = frozenset(),
    ) -> tuple[int, Any]:
        refused = None
        for _ in (1, 2):
            token = await self._bearer(refused=refused)
            headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
            data = None
            if body is not None:
                headers["Content-Type"] = "application/json"
                data = orjson.dumps(body)
            if self.config.deny_private_networks:
                await check_public(self._base + path)
            try:
                async with self.context.session(self.config.deny_private_networks).request(
                    method, self._base + path, data=data, headers=headers, allow_redirects=False
                ) as response:
                    text = (await response.content.read(_MAX_BODY)).decode(errors="replace")
                    status = response.status
                    if 300 <= status < 400:
                        redirect_refused(
                            f"{method} {path}", status, response.headers.get("Location"), text
                        )
                    retry_after = parse_retry_after(
                        response.headers.get("Retry-After"), self.context.clock.now()
                    )
            except aiohttp.ClientError as error:
                raise request_failed(error) from error
            if status == 401 and refused is None:
                refused = token  # it may have been revoked: once more with a new one
                continue
            if 200 <= status < 300 or status in ok:
                try:
                    return status, orjson.loads(text) if text else None
                except ValueError:
                    return status, None
            detail = f"{method} {path} answered {status}"
            excerpt = text[:RESPONSE_EXCERPT]
            if status >= 500 or status in (408, 409, 425, 429):
                raise RetryableDelivery(
                    detail, status=status, response=excerpt, retry_after=retry_after
                )
            raise PermanentDelivery(detail, status=status, response=excerpt)
        raise PermanentDelivery(f"{method} {path}: refused twice with 401", status=401)


@hookimpl
def register_destinations() -> list[type[DestinationConnector]]:
    return [Auvious]
