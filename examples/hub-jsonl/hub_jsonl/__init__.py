"""A hub destination that appends each event to a JSON Lines file.

destinations:
  journal:
    connector: jsonl
    path: /var/lib/hub/events.jsonl
routes:
  - name: keep everything
    on: [booking_confirmed, booking_rescheduled, booking_cancelled]
    send: [{to: journal, fields: [type, booking.client.email]}]
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from pydantic import Field

from hub import hookimpl
from hub.connector import (
    ActionConfig,
    Delivery,
    DeliveryResult,
    DestinationConfig,
    DestinationConnector,
)
from hub.errors import RetryableDelivery


class JsonlConfig(DestinationConfig):
    path: Path = Field(description="The file events are appended to")


class JsonlAction(ActionConfig):
    fields: list[str] | None = Field(
        None, description="Dotted paths into the canonical event to keep (default: all)"
    )


def pick(data: Any, path: str) -> Any:
    for part in path.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data


class Jsonl(DestinationConnector):
    name = "jsonl"
    config_model = JsonlConfig
    action_model = JsonlAction
    config: JsonlConfig

    def plan(self, event, action: JsonlAction) -> list[dict[str, Any]]:  # type: ignore[override]
        return [{"fields": action.fields}]

    async def deliver(self, delivery: Delivery) -> DeliveryResult:
        event = delivery.data
        fields = delivery.message.get("fields")
        record = {f: pick(event, f) for f in fields} if fields else event
        line = json.dumps({"delivery": delivery.id, **record}) + "\n"
        try:
            await asyncio.to_thread(self._append, line)
        except OSError as error:
            raise RetryableDelivery(f"cannot write {self.config.path}: {error.strerror}") from error
        return DeliveryResult()

    def _append(self, line: str) -> None:
        with self.config.path.open("a", encoding="utf-8") as file:
            file.write(line)


@hookimpl
def register_destinations() -> list[type[DestinationConnector]]:
    return [Jsonl]
