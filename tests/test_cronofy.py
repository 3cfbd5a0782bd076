"""Cronofy in: signatures (every vector of the protocol sheet, rotation, the official
client's scheme), Smart Invite replies and push notifications, routed to a webhook."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pycronofy
import pytest
from standardwebhooks import Webhook

from connectors.cronofy import sign
from tests.conftest import fixture_bytes, keys_under

WELL_KNOWN = b'{"example":"well-known"}'
VECTORS = [
    ("pDY0Oi7TJSP2hfNmZNkm5", "6r2/HjBkqymGegX0wOfifieeUXbbHwtV/LohHS+jv6c="),
    ("CRN_NggYusqPGLxwjw5FHOJYOqSrTPNXy8WQf14OID", "5DxentQi5YSXODEzTVv06sRwJ3pULIz1KrYv20qxEK0="),
    ("CRN_nGlYDFXwfSXgB9rvGNBJyfE454GGPtWIbNuPwr", "BmQmWVuZ70ILWjr1CAt5oC7YOolgnku4WZtlrKfx/6k="),
    ("opposable thumbs", "38ArsN7+J/O8joGsgirVEdV16a/+eb+5QgHGIiuv4hk="),
]
OLD_SECRET, NEW_SECRET = VECTORS[1][0], VECTORS[2][0]
BOTH = f"{VECTORS[1][1]},{VECTORS[2][1]}"
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.mark.parametrize(("secret", "expected"), VECTORS)
def test_protocol_vectors(secret, expected) -> None:
    assert sign(secret, WELL_KNOWN) == expected


@pytest.mark.parametrize(("secret", "_"), VECTORS)
def test_the_official_client_accepts_what_the_hub_computes(secret, _) -> None:
    client = pycronofy.Client(client_secret=secret)
    assert client.hmac_valid(sign(secret, WELL_KNOWN), WELL_KNOWN.decode())
    assert client.hmac_valid(f"nonsense,{sign(secret, WELL_KNOWN)}", WELL_KNOWN.decode())
    assert not client.hmac_valid(sign(secret + "x", WELL_KNOWN), WELL_KNOWN.decode())


def cronofy_config(*secrets: str) -> dict:
    return {"connector": "cronofy", "client_secrets": list(secrets)}


WEBHOOK = {"connector": "webhook", "url": "SINK/receiver", "secrets": [WHSEC]}


async def start(start_hub, sink, *secrets, routes=None):
    destination = {**WEBHOOK, "url": f"{sink.url}/receiver"}
    hub = await start_hub(
        sources__cronofy=cronofy_config(*secrets),
        destinations__hooks=destination,
        routes=routes
        or [
            {
                "name": "replies",
                "on": [
                    "invite_replied",
                    "channel_verified",
                    "calendar_changed",
                    "profile_disconnected",
                    "provider_notification",
                ],
                "send": [{"to": "hooks"}],
            }
        ],
    )
    # the receiver below is the standardwebhooks library, which judges the signature's
    # timestamp by the wall clock: the hub's clock is set to it
    hub.clock.advance(time.time() - hub.clock.now())
    return hub


async def post(hub, body: bytes, header: str | None):
    headers = {"Content-Type": "application/json"}
    if header is not None:
        headers["Cronofy-HMAC-SHA256"] = header
    return await hub.client.post("/hooks/cronofy", data=body, headers=headers)


@pytest.mark.parametrize(
    ("configured", "header", "status"),
    [
        ((OLD_SECRET,), BOTH, 202),  # rotation: the header carries both, either configured
        ((NEW_SECRET,), BOTH, 202),
        ((OLD_SECRET, NEW_SECRET), VECTORS[2][1], 202),
        ((OLD_SECRET, NEW_SECRET), VECTORS[0][1], 401),
        ((VECTORS[3][0],), BOTH, 401),
        ((OLD_SECRET,), None, 401),
        ((OLD_SECRET,), "", 401),
    ],
)
async def test_signatures_with_rotation(start_hub, sink, configured, header, status) -> None:
    hub = await start(start_hub, sink, *configured)
    response = await post(hub, WELL_KNOWN_NOTIFICATION, None if header is None else _for(header))
    assert response.status == status, await response.text()
    if status == 401:
        assert await keys_under(hub.prefix) == []


# A body whose signatures are the protocol sheet's: the well-known one is not a valid
# notification, so the vectors are re-derived for this body with the same secrets.
WELL_KNOWN_NOTIFICATION = (
    b'{"notification":{"type":"verification"},"channel":{"channel_id":"chn_1"}}'
)


def _for(header: str) -> str:
    """The header of the same secrets for the notification body."""
    by_value = {expected: secret for secret, expected in VECTORS}
    return ",".join(
        sign(by_value[v], WELL_KNOWN_NOTIFICATION) if v in by_value else v
        for v in header.split(",")
    )


async def test_a_smart_invite_reply_is_routed_as_invite_replied(start_hub, sink) -> None:
    hub = await start(start_hub, sink, OLD_SECRET)
    body = fixture_bytes("cronofy/smart_invite_reply.json")
    response = await post(hub, body, sign(OLD_SECRET, body))
    assert response.status == 202
    again = await post(hub, body, sign(OLD_SECRET, body))  # no timestamp: dedup on the body
    assert (await again.json())["duplicate"] is True
    await hub.worker.drain()
    [request] = sink.requests
    # the webhook destination signs what it sends; the independent library verifies it
    payload = Webhook(WHSEC).verify(request.body, request.headers)
    assert payload["type"] == "invite_replied"
    reply = payload["data"]["reply"]
    assert (reply["invite_id"], reply["status"]) == ("consult-2026-12-03-mara", "tentative")
    assert reply["comment"] == "Could we make it an hour later?"
    proposal = reply["proposal"]
    assert proposal["start_time_zone"] == "Europe/Zurich"
    assert datetime.fromisoformat(proposal["start"]) == datetime(2026, 12, 3, 10, 30, tzinfo=UTC)
    assert payload["data"]["booking"] is None


@pytest.mark.parametrize(
    ("kind", "event_type"),
    [
        ("verification", "channel_verified"),
        ("change", "calendar_changed"),
        ("profile_disconnected", "profile_disconnected"),
        ("calendar_shared", "provider_notification"),
    ],
)
async def test_push_notifications_become_their_own_event_types(start_hub, sink, kind, event_type):
    hub = await start(start_hub, sink, OLD_SECRET)
    body = json.dumps(
        {
            "notification": {"type": kind, "changes_since": "2026-11-20T08:00:00Z"},
            "channel": {
                "channel_id": "chn_54cf7c7cb4ad4c1027000001",
                "callback_url": "https://hub.example.org/hooks/cronofy",
                "filters": {},
            },
        }
    ).encode()
    response = await post(hub, body, sign(OLD_SECRET, body))
    assert response.status == 202
    await hub.worker.drain()
    [request] = sink.requests
    assert Webhook(WHSEC).verify(request.body, request.headers)["type"] == event_type


async def test_a_smart_invite_without_its_invite_is_400(start_hub, sink) -> None:
    hub = await start(start_hub, sink, OLD_SECRET)
    body = b'{"notification":{"type":"smart_invite"}}'
    response = await post(hub, body, sign(OLD_SECRET, body))
    assert response.status == 400
    assert (await response.json())["field"] == "smart_invite"


async def test_cronofy_callbacks_are_remembered_for_thirty_days(start_hub, sink) -> None:
    import redis.asyncio as aioredis

    from hub.testing import REDIS_URL

    hub = await start(start_hub, sink, OLD_SECRET)
    body = fixture_bytes("cronofy/smart_invite_reply.json")
    assert (await post(hub, body, sign(OLD_SECRET, body))).status == 202
    [dedup] = [k for k in await keys_under(hub.prefix) if ":dedup:" in k]
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        ttl = await client.ttl(dedup)
    finally:
        await client.aclose()
    assert 29 * 86400 < ttl <= 30 * 86400  # the store's default is 3 days
