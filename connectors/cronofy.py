"""Cronofy callbacks as a source: Smart Invite replies and push notification channels.

Signature: ``Cronofy-HMAC-SHA256`` is the standard base64 of HMAC-SHA256 over the raw body,
keyed by the client secret. While a secret is being rotated the header carries several
values, comma-separated, one per active secret: a callback is authentic if any value
matches any configured secret. No timestamp is signed, so replays cannot be told apart
from redeliveries: the hub drops a body it has accepted within the dedup window.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import structlog
from pydantic import Field

from hub import hookimpl
from hub.connector import NormalizeContext, SourceConfig, SourceConnector
from hub.errors import SignatureError
from hub.model import BookingEvent, InviteReply, Proposal
from hub.secrets import SigningKey
from hub.units import Duration

log = structlog.get_logger(__name__)

SIGNATURE_HEADER = "Cronofy-HMAC-SHA256"
# Push notification types and the canonical event each becomes.
PUSH_TYPES = {
    "verification": "channel_verified",
    "change": "calendar_changed",
    "profile_disconnected": "profile_disconnected",
}


class CronofyConfig(SourceConfig):
    client_secrets: list[SigningKey] = Field(
        min_length=1, description="The client secret; several while rotating"
    )
    dedup_window: Duration = Field(
        timedelta(days=30),
        ge=timedelta(seconds=1),
        description="How long a callback's body is remembered: Cronofy signs no timestamp, "
        "so a replayed callback can only be told by having been seen",
    )


_DIGEST = re.compile(rb"[A-Za-z0-9+/]{43}=")  # 32 bytes in standard base64


def sign(secret: str, body: bytes) -> str:
    """The header value Cronofy sends for ``body`` under one secret."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


class Cronofy(SourceConnector):
    name = "cronofy"
    config_model = CronofyConfig
    schema = "cronofy/notification.json"
    config: CronofyConfig
    single_headers = (SIGNATURE_HEADER,)

    def screen(self, headers: Mapping[str, str], now: float) -> None:
        self._offered(headers)

    def _offered(self, headers: Mapping[str, str]) -> list[bytes]:
        value = headers.get(SIGNATURE_HEADER)
        if not value:
            raise SignatureError(f"missing {SIGNATURE_HEADER} header")
        offered = [v.strip().encode() for v in value.split(",") if v.strip()]
        if not offered or not all(_DIGEST.fullmatch(o) for o in offered):
            raise SignatureError(
                f"{SIGNATURE_HEADER} must be base64 HMAC-SHA256 digests, comma-separated"
            )
        return offered

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        offered = self._offered(headers)
        expected = [sign(s.get_secret_value(), body).encode() for s in self.config.client_secrets]
        # every pair is compared, in constant time each, whatever matches first
        matches = [hmac.compare_digest(o, e) for o in offered for e in expected]
        if not any(matches):
            raise SignatureError("signature does not match the body under any client secret")

    def dedup_window(self) -> timedelta:
        return self.config.dedup_window

    def order_key(self, payload: dict[str, Any]) -> str | None:
        invite = payload.get("smart_invite")
        if isinstance(invite, dict) and isinstance(invite.get("smart_invite_id"), str):
            return f"smart_invite:{invite['smart_invite_id']}"
        channel = payload.get("channel")
        if isinstance(channel, dict) and isinstance(channel.get("channel_id"), str):
            return f"channel:{channel['channel_id']}"
        return None

    def event_name(self, payload: dict[str, Any]) -> str | None:
        kind = payload.get("notification", {}).get("type")
        return kind if isinstance(kind, str) else None

    async def normalize(
        self, payload: dict[str, Any], context: NormalizeContext
    ) -> list[BookingEvent]:
        kind = payload["notification"]["type"]
        common = {
            "id": context.event_id(0),
            "source": context.source,
            "inbound_event_id": context.inbound_event_id,
            "received_at": context.received_at,
            "raw": payload,
        }
        if kind == "smart_invite":
            invite = payload["smart_invite"]
            answer = invite.get("reply") or invite["recipient"]
            return [
                BookingEvent(
                    type="invite_replied",
                    occurred_at=context.received_at,
                    reply=_reply(invite["smart_invite_id"], answer),
                    **common,
                )
            ]
        event_type = PUSH_TYPES.get(kind, "provider_notification")
        if event_type == "provider_notification":
            log.info("cronofy.unknown_type", event_id=context.inbound_event_id, type=kind)
        since = payload["notification"].get("changes_since")
        return [BookingEvent(type=event_type, occurred_at=since or context.received_at, **common)]


def _reply(invite_id: str, answer: Mapping[str, Any]) -> InviteReply:
    proposal = answer.get("proposal")
    return InviteReply(
        invite_id=invite_id,
        email=answer.get("email"),
        status=answer["status"],
        comment=answer.get("comment"),
        proposal=Proposal(
            start=proposal["start"]["time"],
            start_time_zone=proposal["start"].get("tzid"),
            end=proposal["end"]["time"],
            end_time_zone=proposal["end"].get("tzid"),
        )
        if proposal
        else None,
    )


@hookimpl
def register_sources() -> list[type[SourceConnector]]:
    return [Cronofy]
