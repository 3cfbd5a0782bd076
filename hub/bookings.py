"""What a source connector may ask of the hub about bookings it has seen.

Connectors never touch the store; they get a ``Bookings`` in their normalize context: the
current state of a booking by a provider reference, and the pairing of changes a provider
sends as two webhooks (Calendly's reschedule).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from hub.ids import new_id
from hub.model import Booking, BookingEvent
from hub.store import NewJob, Store

__all__ = ["Bookings", "Pairing", "record"]

Pairing = Literal["paired", "alone", "wait", "done", "late"]


class Bookings:
    def __init__(self, store: Store, now: float) -> None:
        self._store = store
        self._now = now

    async def by_ref(self, ref: str) -> Booking | None:
        """The booking a provider reference names, as it stands, if the hub has seen it."""
        stored = await self._store.booking_by_ref(ref)
        if stored is None:
            return None
        return Booking.model_validate({**stored.snapshot, "sequence": stored.sequence})

    async def pair(
        self,
        key: str,
        role: str,
        alone: BookingEvent,
        *,
        alone_ok: bool,
        window: timedelta,
    ) -> tuple[Pairing, BookingEvent | None]:
        """Offer one half of a change sent as two webhooks, both naming ``key``.

        ``alone`` is the event this half means on its own. Returns ``("paired", the other
        half's alone-event)`` when the other half came first; ``("alone", None)`` when
        ``alone_ok`` and this half came first (emit ``alone`` now, the other half will get
        ``done``); ``("wait", None)`` when this half must wait for its partner: if none
        comes within ``window``, the hub emits ``alone`` then; ``("done", None)`` when the
        pair was handled already; ``("late", the other half's alone-event)`` when the other
        half waited in vain and went alone before this one came.
        """
        fallback = NewJob(
            id=new_id("job", self._now),
            kind="timer",
            payload={"timer": "pair", "key": key},
            due=self._now + window.total_seconds(),
            event_id=alone.inbound_event_id,
        )
        result = await self._store.pair(key, role, alone.to_json(), alone_ok, fallback, self._now)
        partner = BookingEvent.model_validate(result.partner) if result.partner else None
        return result.status, partner


async def record(
    store: Store, event: BookingEvent, now: float, snapshot: dict[str, Any] | None = None
) -> tuple[int, bool]:
    """Keep the booking's new state: ``snapshot``, the booking as JSON (made from the event
    if not given). Returns the booking's sequence as of this event, and whether the event is
    stale (older than the state: a replayed past event, which changes nothing)."""
    booking = event.booking
    refs = [ref for ref in (booking.provider_ref, booking.id) if ref]
    if event.original is not None and event.original.provider_ref:
        refs.append(event.original.provider_ref)
    return await store.record_booking(
        booking.uid,
        event.id,
        booking.model_dump(mode="json") if snapshot is None else snapshot,
        event.type in ("booking_rescheduled", "booking_cancelled"),
        refs,
        now,
        event.occurred_at.timestamp(),
    )
