"""Hostile requests at POST /hooks/{source}: refused early, clearly, and alone."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from standardwebhooks import Webhook

from connectors.calendly import sign
from hub.appkeys import READING
from hub.intake import nesting_exceeds
from hub.store.redis import RedisStore
from hub.testing import REDIS_URL
from tests.conftest import SIGNING_KEY, fixture_bytes, keys_under

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


async def _shop(start_hub, tmp_path, **overrides: Any):
    schema = tmp_path / "any.json"
    schema.write_text(json.dumps({"type": "object"}))
    return await start_hub(
        sources__shop={"connector": "webhook", "secrets": [SECRET], "schema_file": str(schema)},
        sources__cronofy={"connector": "cronofy", "client_secrets": ["cronofy-secret-0123456789"]},
        **overrides,
    )


def _signed(hub, body: bytes, msg_id: str) -> dict[str, str]:
    moment = datetime.fromtimestamp(int(hub.clock.now()), UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": Webhook(SECRET).sign(msg_id, moment, body.decode()),
    }


async def _raw(port: int, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """Send a request as bytes (the head without its final blank line) and read the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + b"\r\nConnection: close\r\n\r\n" + body)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 5)  # the server closes: a bound only
    finally:
        writer.close()
    status = int(answer.split(b" ", 2)[1])
    return status, answer.partition(b"\r\n\r\n")[2]


def test_nesting_is_measured_without_recursion() -> None:
    deep: Any = 1
    for _ in range(100_000):
        deep = [deep]
    assert nesting_exceeds(deep, 64)
    assert not nesting_exceeds({"a": [{"b": 1}], "c": {"d": []}}, 3)
    assert nesting_exceeds({"a": [{"b": {}}]}, 3)
    assert not any(nesting_exceeds(scalar, 1) for scalar in (None, 1, "x", 2.5, True))


@pytest.mark.parametrize("depth", [40, 300, 1000])
async def test_deep_json_is_400_naming_max_depth(start_hub, tmp_path, depth) -> None:
    hub = await _shop(start_hub, tmp_path)
    body = ('{"a":' * depth + "1" + "}" * depth).encode()
    response = await hub.client.post("/hooks/shop", data=body, headers=_signed(hub, body, "m1"))
    assert response.status == 400
    assert "server.max_depth (32 levels)" in (await response.json())["detail"]
    # a payload that also fails its schema, as deep as JSON parsers take
    calendly = ('{"event":"invitee.created","payload":' * 500 + "1" + "}" * 500).encode()
    answer = await hub.post_calendly(calendly)
    assert answer.status == 400
    assert await keys_under(hub.prefix) == []


@pytest.mark.parametrize(
    ("path", "header"),
    [
        ("/hooks/calendly", "Calendly-Webhook-Signature"),
        ("/hooks/cronofy", "Cronofy-HMAC-SHA256"),
        ("/hooks/shop", "webhook-id"),
        ("/hooks/shop", "webhook-signature"),
    ],
)
async def test_a_repeated_signature_or_id_header_is_401(start_hub, tmp_path, path, header) -> None:
    hub = await _shop(start_hub, tmp_path)
    body = fixture_bytes("calendly/invitee_created.json")
    good = {
        "/hooks/calendly": {
            "Calendly-Webhook-Signature": sign(SIGNING_KEY, int(hub.clock.now()), body)
        },
        "/hooks/cronofy": {"Cronofy-HMAC-SHA256": "A" * 43 + "="},
        "/hooks/shop": _signed(hub, body, "msg_1"),
    }[path]
    head = f"POST {path} HTTP/1.1\r\nHost: hub\r\nContent-Length: {len(body)}"
    for name, value in good.items():
        head += f"\r\n{name}: {value}"
    head += f"\r\n{header}: {good.get(header, 'x')}-again"
    status, answer = await _raw(hub.client.server.port, head.encode(), body)
    assert status == 401
    assert f"{header} header is repeated" in json.loads(answer)["detail"]
    assert await keys_under(hub.prefix) == []


async def test_verify_and_dedup_read_the_same_webhook_id(tmp_path) -> None:
    from multidict import CIMultiDict

    from connectors.webhook import WebhookSource, WebhookSourceConfig

    schema = tmp_path / "any.json"
    schema.write_text("{}")
    source = WebhookSource(
        "s", WebhookSourceConfig(connector="webhook", secrets=[SECRET], schema_file=schema)
    )
    body = b'{"test": 1}'
    moment = datetime.fromtimestamp(1614265330, UTC)
    headers = CIMultiDict(
        [
            ("webhook-id", "msg_signed"),
            ("webhook-timestamp", "1614265330"),
            ("webhook-signature", Webhook(SECRET).sign("msg_signed", moment, body.decode())),
            ("Webhook-Id", "msg_other"),
        ]
    )
    source.verify(headers, body, now=1614265330)
    assert source.dedup_key(headers, body) == "msg_signed"


async def test_refused_from_the_headers_before_the_body_is_sent(start_hub, tmp_path) -> None:
    hub = await _shop(start_hub, tmp_path)
    port = hub.client.server.port
    # no body follows these heads: an answer proves the body was never waited for
    unsigned = b"POST /hooks/calendly HTTP/1.1\r\nHost: hub\r\nContent-Length: 262144"
    assert (await _raw(port, unsigned))[0] == 401
    stale = sign(SIGNING_KEY, int(hub.clock.now()) - 3600, b"{}")
    head = f"POST /hooks/calendly HTTP/1.1\r\nHost: hub\r\nCalendly-Webhook-Signature: {stale}"
    status, answer = await _raw(port, (head + "\r\nContent-Length: 1000").encode())
    assert (status, json.loads(answer)["error"]) == (401, "invalid_signature")
    fresh = sign(SIGNING_KEY, int(hub.clock.now()), b"{}")
    head = f"POST /hooks/calendly HTTP/1.1\r\nHost: hub\r\nCalendly-Webhook-Signature: {fresh}"
    status, answer = await _raw(port, (head + "\r\nContent-Length: 99999999").encode())
    assert (status, json.loads(answer)["error"]) == (413, "payload_too_large")
    garbled = b"POST /hooks/cronofy HTTP/1.1\r\nHost: hub\r\nCronofy-HMAC-SHA256: abc"
    assert (await _raw(port, garbled + b"\r\nContent-Length: 1000"))[0] == 401
    unsigned_shop = b"POST /hooks/shop HTTP/1.1\r\nHost: hub\r\nContent-Length: 1000"
    assert (await _raw(port, unsigned_shop))[0] == 401


async def test_a_body_that_never_arrives_is_408(start_hub) -> None:
    hub = await start_hub(server__body_timeout="200ms")
    fresh = sign(SIGNING_KEY, int(hub.clock.now()), b"{}")
    head = (
        f"POST /hooks/calendly HTTP/1.1\r\nHost: hub\r\nCalendly-Webhook-Signature: {fresh}"
        "\r\nContent-Length: 5000"
    )
    status, answer = await _raw(hub.client.server.port, head.encode(), b'{"event":')
    assert status == 408
    assert "server.body_timeout" in json.loads(answer)["detail"]
    assert await keys_under(hub.prefix) == []


async def test_unknown_sources_share_one_metric_label(start_hub) -> None:
    hub = await start_hub()
    for _ in range(50):
        response = await hub.client.post(f"/hooks/{uuid.uuid4().hex}", data=b"{}")
        assert response.status == 404
    text = await (await hub.client.get("/metrics")).text()
    labels = set(re.findall(r'hub_webhooks_total\{outcome="[a-z_]+",source="([^"]+)"\}', text))
    assert labels == {"(unknown)"}


async def test_dedup_keys_reach_redis_hashed(start_hub, tmp_path) -> None:
    hub = await _shop(start_hub, tmp_path)
    body = b'{"order": 1}'
    response = await hub.client.post(
        "/hooks/shop", data=body, headers=_signed(hub, body, "msg_" + "\u00e9\u2028" * 500)
    )
    assert response.status == 202
    # a header value that is no UTF-8 at all, sent as raw bytes
    head = b"POST /hooks/shop HTTP/1.1\r\nHost: hub\r\nContent-Length: %d" % len(body)
    for name, value in _signed(hub, body, "bad").items():
        value = value.encode() if name != "webhook-id" else b"msg_\xff\xfe"
        head += b"\r\n" + name.encode() + b": " + value
    status, _ = await _raw(hub.client.server.port, head, body)
    assert status == 401  # its signature covers another id: refused, nothing stored
    dedup = [k for k in await keys_under(hub.prefix) if ":dedup:" in k]
    assert len(dedup) == 1
    assert re.fullmatch(r".*:dedup:shop:[0-9a-f]{64}", dedup[0])


async def test_a_poisoned_call_fails_alone_not_its_batch(redis_prefix) -> None:
    store = RedisStore.from_url(REDIS_URL, prefix=redis_prefix)
    calls = [
        store.accept("s", f"key-{i}", b"{}", 1_700_000_000.0, f"evt_{i}", f"job_{i}", "ref")
        for i in range(5)
    ]
    calls.insert(
        2, store.accept("s", "k", b"{}", 1_700_000_000.0, "evt_bad", "job_bad", "ref\udcff")
    )
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(results[2], ValueError)
    assert [r.duplicate for i, r in enumerate(results) if i != 2] == [False] * 5
    await store.close()


def test_a_schema_error_on_very_deep_json_is_invalid_payload_not_recursion() -> None:
    from hub.errors import InvalidPayload
    from hub.schemas import validator

    deep: Any = "x"
    for _ in range(5000):
        deep = {"payload": deep}
    with pytest.raises(InvalidPayload):
        validator("calendly/webhook.json").check({"event": "invitee.created", "payload": deep})


async def test_a_schema_error_is_logged_by_field_without_the_values(start_hub, capsys) -> None:
    hub = await start_hub()
    payload = json.loads(fixture_bytes("calendly/invitee_created.json"))
    payload["payload"]["status"] = "Mara Keller, mara.keller@example.org"
    response = await hub.post_calendly(json.dumps(payload).encode())
    assert response.status == 400
    assert (await response.json())["field"] == "payload.status"
    logged = capsys.readouterr()
    assert "payload.status" in logged.out + logged.err
    assert "mara.keller" not in logged.out + logged.err


async def test_with_redis_down_readyz_hides_its_address_and_ics_links_answer_503(
    start_hub,
) -> None:
    from hub.ics import IcsLinks

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    secret = "ics-link-secret-0123"
    hub = await start_hub(store__url=f"redis://127.0.0.1:{port}/0", server__ics_secret=secret)
    ready = await hub.client.get("/readyz")
    assert ready.status == 503
    assert "127.0.0.1" not in await ready.text() and str(port) not in await ready.text()
    token = IcsLinks(secret.encode(), None).token("booking-uid")
    answer = await hub.client.get(f"/bookings/{token}.ics")
    assert answer.status == 503
    assert (await answer.json())["error"] == "store_unavailable"


async def test_bodies_read_at_once_are_bounded(start_hub) -> None:
    hub = await start_hub(server__max_reading=1, server__body_timeout="2s")
    port = hub.client.server.port
    fresh = sign(SIGNING_KEY, int(hub.clock.now()), b"{}")
    head = (
        f"POST /hooks/calendly HTTP/1.1\r\nHost: hub\r\nCalendly-Webhook-Signature: {fresh}"
        "\r\nContent-Length: 5000"
    ).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head + b"\r\n\r\n" + b'{"event":')  # holds the only slot
    await writer.drain()
    slots = hub.client.server.app[READING]
    body = fixture_bytes("calendly/invitee_created.json")
    second = None
    try:
        async with asyncio.timeout(5):  # the server runs in this loop: watch it
            while not slots.locked():  # noqa: ASYNC110
                await asyncio.sleep(0.005)
            second = asyncio.create_task(hub.post_calendly(body))
            while not getattr(slots, "_waiters", None):  # noqa: ASYNC110
                await asyncio.sleep(0.005)
        assert not second.done()  # a complete body waits for the slot
    finally:
        writer.close()  # the slow sender gives up: its slot is free
    assert second is not None
    assert (await second).status == 202
    del reader
