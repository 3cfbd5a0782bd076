"""Meeting outcomes that operators record: ``meeting_outcome_changed`` events.

An outcome is stored as an inbound event of the built-in source ``operator`` (so it is
listed, indexed with its booking and replayable like any webhook) and dispatched through
the routes like the rest. Its source takes no webhooks: ``POST /hooks/operator`` stays
unknown unless hub.yaml names a source so.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from hub.connector import NormalizeContext, SourceConfig, SourceConnector
from hub.errors import SignatureError
from hub.model import Booking, BookingEvent, Outcome

__all__ = ["OPERATOR", "OperatorSource", "outcome_body"]

OPERATOR = "operator"

_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["booking", "outcome", "at"],
    "properties": {
        "booking": {"type": "object"},
        "outcome": {"type": "object"},
        "at": {"type": "number"},
    },
}


def outcome_body(
    snapshot: dict[str, Any], outcome: str, note: str | None, by: str, now: float
) -> bytes:
    """The stored body of one recorded outcome."""
    return orjson.dumps(
        {"booking": snapshot, "outcome": {"value": outcome, "note": note, "by": by}, "at": now}
    )


class OperatorSource(SourceConnector):
    name = OPERATOR
    schema = _SCHEMA

    def __init__(self) -> None:
        super().__init__(OPERATOR, SourceConfig(connector=OPERATOR))

    def verify(self, headers: Any, body: bytes, now: float) -> None:
        raise SignatureError("operator events come from the admin API only")

    def event_name(self, payload: dict[str, Any]) -> str | None:
        return f"outcome.{payload.get('outcome', {}).get('value', '')}"

    async def normalize(
        self, payload: dict[str, Any], context: NormalizeContext
    ) -> list[BookingEvent]:
        at = datetime.fromtimestamp(payload["at"], UTC)
        return [
            BookingEvent(
                id=context.event_id(0),
                type="meeting_outcome_changed",
                source=OPERATOR,
                inbound_event_id=context.inbound_event_id,
                occurred_at=at,
                received_at=context.received_at,
                booking=Booking.model_validate(payload["booking"]),
                outcome=Outcome.model_validate(payload["outcome"]),
            )
        ]
