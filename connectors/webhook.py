"""Signed webhooks: a generic destination and a generic source, per Standard Webhooks.

Headers ``webhook-id``, ``webhook-timestamp`` (unix seconds) and ``webhook-signature``
(``v1,<base64>`` of HMAC-SHA256 over ``{id}.{timestamp}.{body}`` keyed by the
base64-decoded ``whsec_`` secret; several, space-separated, while secrets rotate).

The destination POSTs ``{"type", "timestamp", "data"}``: ``data`` is the canonical event,
or the fields an action shapes from it with CEL. ``webhook-id`` is the delivery id, the
same across retries, so a receiver can drop what it has seen. The source verifies the same
headers and passes the payload through, checked against a JSON Schema the operator gives.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from pydantic import AnyHttpUrl, ConfigDict, Field, SecretStr, ValidationInfo, field_validator

from hub import hookimpl
from hub.conditions import Expression, compile_expression
from hub.connector import (
    ActionConfig,
    ConnectorContext,
    Delivery,
    DeliveryResult,
    DestinationConfig,
    DestinationConnector,
    NormalizeContext,
    SourceConfig,
    SourceConnector,
)
from hub.errors import PermanentDelivery, SignatureError
from hub.model import EVENT_TYPES, BookingEvent
from hub.outbound import post_json
from hub.schemas import SchemaValidator, compile_schema
from hub.secrets import MIN_KEY_LENGTH
from hub.units import Duration

_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """The first value of a header, whatever its case, from a multidict or a plain dict."""
    return next((v for k, v in headers.items() if k.lower() == name), None)


def _key(secret: SecretStr) -> bytes:
    """The HMAC key of a ``whsec_`` secret: its base64-decoded bytes."""
    return base64.b64decode(secret.get_secret_value().removeprefix("whsec_"), validate=True)


def signer(key: bytes) -> hmac.HMAC:
    """The HMAC-SHA256 state of ``key``, made once: ``sign`` continues a copy of it, which
    spares each signature looking the digest up and hashing the key again."""
    return hmac.new(key, digestmod=hashlib.sha256)


def sign(keyed: hmac.HMAC, msg_id: bytes, timestamp: int, body: bytes) -> str:
    """A Standard Webhooks v1 signature: base64 of HMAC-SHA256 over ``id.timestamp.body``
    under the key of ``keyed`` (``signer``), made on the bytes that go out (the tests check
    it with the standardwebhooks library)."""
    mac = keyed.copy()
    mac.update(b"%s.%d.%s" % (msg_id, timestamp, body))
    return "v1," + base64.b64encode(mac.digest()).decode()


def _whsec(value: SecretStr) -> SecretStr:
    try:
        key = _key(value)
    except ValueError:
        raise ValueError("expected a Standard Webhooks secret: whsec_ and base64") from None
    if len(key) < MIN_KEY_LENGTH:
        raise ValueError(
            f"is too short: a whsec_ secret needs at least {MIN_KEY_LENGTH} bytes after whsec_"
        )
    return value


class WebhookDestinationConfig(DestinationConfig):
    url: AnyHttpUrl = Field(description="Where to POST")
    secrets: list[SecretStr] = Field(
        min_length=1, description="whsec_ secrets; every one signs (rotation)"
    )

    @field_validator("secrets")
    @classmethod
    def _secrets(cls, values: list[SecretStr]) -> list[SecretStr]:
        return [_whsec(v) for v in values]


class WebhookAction(ActionConfig):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    fields: dict[str, str] | None = Field(
        None, description="Shape `data`: field name → CEL expression over the event"
    )

    @field_validator("fields")
    @classmethod
    def _compile(cls, fields: dict[str, str] | None) -> dict[str, str] | None:
        for name, expression in (fields or {}).items():
            compile_expression(f"field {name}", expression)  # raises if it does not compile
        return fields


class WebhookDestination(DestinationConnector):
    name = "webhook"
    config_model = WebhookDestinationConfig
    action_model = WebhookAction
    config: WebhookDestinationConfig

    def __init__(
        self, destination: str, config: WebhookDestinationConfig, context: ConnectorContext
    ):
        super().__init__(destination, config, context)
        self._signers = [signer(_key(s)) for s in config.secrets]
        self._url = str(config.url)
        self._fields: dict[str, dict[str, Expression]] = {}

    def plan(self, event: BookingEvent, action: WebhookAction) -> list[dict[str, Any]]:  # type: ignore[override]
        return [{"fields": action.fields}] if action.fields else [{}]

    def _data(self, delivery: Delivery, fields: dict[str, str] | None) -> dict[str, Any]:
        if not fields:
            return delivery.data  # the canonical event as JSON, as it was stored
        event = delivery.event
        key = json.dumps(fields, sort_keys=True)
        compiled = self._fields.get(key)
        if compiled is None:
            compiled = {n: compile_expression(f"field {n}", e) for n, e in fields.items()}
            self._fields[key] = compiled
        try:
            return {name: expression.evaluate(event) for name, expression in compiled.items()}
        except Exception as error:
            raise PermanentDelivery(
                f"a field of the action failed on this event: {error}"
            ) from error

    async def deliver(self, delivery: Delivery) -> DeliveryResult:
        now = self.context.clock.now()
        event = delivery.data
        body = {
            "type": event["type"],
            "timestamp": datetime.fromisoformat(event["occurred_at"]).isoformat(),
            "data": self._data(delivery, delivery.message.get("fields")),
        }
        data = orjson.dumps(body)
        seconds = int(now)
        msg_id = delivery.id.encode()
        headers = {
            "webhook-id": delivery.id,
            "webhook-timestamp": str(seconds),
            "webhook-signature": " ".join(sign(k, msg_id, seconds, data) for k in self._signers),
        }
        return await post_json(
            self.context.poster(self.config.deny_private_networks),
            self._url,
            data,
            now=now,
            headers=headers,
            deny_private_networks=self.config.deny_private_networks,
        )


class WebhookSourceConfig(SourceConfig):
    secrets: list[SecretStr] = Field(min_length=1, description="whsec_ secrets (rotation)")
    schema_file: Path = Field(description="JSON Schema the payloads must follow")
    event_type: str = Field(
        "provider_notification", description="The canonical event type of every payload"
    )
    tolerance: Duration = Field(timedelta(minutes=5), description="Signature timestamp tolerance")

    @field_validator("secrets")
    @classmethod
    def _secrets(cls, values: list[SecretStr]) -> list[SecretStr]:
        return [_whsec(v) for v in values]

    @field_validator("schema_file")
    @classmethod
    def _schema(cls, path: Path, info: ValidationInfo) -> Path:
        base = (info.context or {}).get("base_dir")
        if base is not None and not path.is_absolute():
            path = Path(base) / path
        try:
            compile_schema(json.loads(path.read_text()))
        except OSError as error:
            raise ValueError(f"cannot read {path}: {error.strerror}") from None
        except Exception as error:
            raise ValueError(f"{path} is not a JSON Schema: {error}") from None
        return path

    @field_validator("event_type")
    @classmethod
    def _type(cls, value: str) -> str:
        if value not in EVENT_TYPES:
            raise ValueError(f"expected one of {', '.join(EVENT_TYPES)}")
        return value


class WebhookSource(SourceConnector):
    """For providers the hub does not know yet: verified, checked, passed through."""

    name = "webhook"
    config_model = WebhookSourceConfig
    schema = {"type": "object"}
    config: WebhookSourceConfig
    single_headers = _HEADERS

    def __init__(self, source: str, config: WebhookSourceConfig) -> None:
        super().__init__(source, config)
        self.validator: SchemaValidator = compile_schema(json.loads(config.schema_file.read_text()))
        self._keys = [_key(s) for s in config.secrets]

    def screen(self, headers: Mapping[str, str], now: float) -> None:
        self._present(headers, now)

    def _present(self, headers: Mapping[str, str], now: float) -> dict[str, str]:
        present = {name: _header(headers, name) for name in _HEADERS}
        missing = [name for name, value in present.items() if not value]
        if missing:
            raise SignatureError(f"missing {', '.join(missing)} header")
        stamp = present["webhook-timestamp"]
        if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
            raise SignatureError("webhook-timestamp must be unix seconds")
        if abs(now - int(stamp)) > self.config.tolerance.total_seconds():
            raise SignatureError(f"signature timestamp {stamp} is too far from now")
        return present  # type: ignore[return-value]

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        present = self._present(headers, now)
        stamp = present["webhook-timestamp"]
        signed = f"{present['webhook-id']}.{stamp}.".encode() + body
        offered = [
            signature.encode()
            for version, _, signature in (
                p.partition(",") for p in present["webhook-signature"].split()
            )
            if version == "v1"
        ]
        for key in self._keys:
            expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
            if any(hmac.compare_digest(expected, o) for o in offered):
                return
        raise SignatureError("no signature matches the body under any secret")

    def dedup_key(self, headers: Mapping[str, str], body: bytes) -> str:
        # the same reading of webhook-id as verify's, so a repeated header cannot split them
        return _header(headers, "webhook-id") or super().dedup_key(headers, body)

    async def normalize(
        self, payload: dict[str, Any], context: NormalizeContext
    ) -> list[BookingEvent]:
        return [
            BookingEvent(
                id=context.event_id(0),
                type=self.config.event_type,
                source=context.source,
                inbound_event_id=context.inbound_event_id,
                occurred_at=context.received_at,
                received_at=context.received_at,
                raw=payload,
            )
        ]


@hookimpl
def register_sources() -> list[type[SourceConnector]]:
    return [WebhookSource]


@hookimpl
def register_destinations() -> list[type[DestinationConnector]]:
    return [WebhookDestination]
