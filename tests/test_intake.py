"""POST /hooks/{source}: signatures, malformed and invalid payloads, limits, health."""

from __future__ import annotations

import json
import socket

import pytest

from connectors.calendly import Calendly, CalendlyConfig, sign
from hub.errors import SignatureError
from tests.conftest import SIGNING_KEY, fixture_bytes, fixture_json, keys_under


def test_calendly_check_value() -> None:
    body = b'{"event":"invitee.created","payload":{}}'
    expected = "64bf08a30da1d15884ac1dc75a2056224f3a2d1e60592bbe24d5bbdec160c5e7"
    assert sign("calendly-test-signing-key", 1700000000, body) == f"t=1700000000,v1={expected}"
    source = Calendly(
        "calendly", CalendlyConfig(connector="calendly", signing_key="calendly-test-signing-key")
    )
    headers = {"Calendly-Webhook-Signature": f"t=1700000000,v1={expected}"}
    source.verify(headers, body, now=1700000000 + 179)
    with pytest.raises(SignatureError):
        source.verify(headers, body + b" ", now=1700000000)


def _tampered(body: bytes) -> bytes:
    return body.replace(b"Mara Keller", b"Mara Kellner")


@pytest.mark.parametrize(
    ("case", "detail"),
    [
        ("wrong key", "does not match"),
        ("tampered body", "does not match"),
        ("missing header", "missing"),
        ("garbled header", "must look like"),
        ("non-ascii timestamp", "must look like"),
        ("non-ascii signature", "must look like"),
        ("huge timestamp", "must look like"),
        ("stale timestamp", "from now"),
        ("future timestamp", "from now"),
    ],
)
async def test_bad_signatures_are_refused_and_nothing_is_stored(start_hub, case, detail) -> None:
    hub = await start_hub()
    body = fixture_bytes("calendly/invitee_created.json")
    now = int(hub.clock.now())
    t, key, sent = now, "calendly-test-signing-key", body
    headers = None
    if case == "wrong key":
        key = "someone-elses-key"
    elif case == "tampered body":
        sent = _tampered(body)
    elif case == "missing header":
        headers = {"Content-Type": "application/json"}
    elif case == "garbled header":
        headers = {"Calendly-Webhook-Signature": "v1=abc"}
    elif case == "non-ascii signature":
        sig = "\u00e9" * 64
        headers = {"Calendly-Webhook-Signature": f"t={now},v1={sig}".encode().decode("latin-1")}
    elif case == "huge timestamp":
        headers = {"Calendly-Webhook-Signature": "t=" + "9" * 5000 + ",v1=" + "0" * 64}
    elif case == "non-ascii timestamp":
        headers = {"Calendly-Webhook-Signature": "t=\u00b2,v1=abc".encode().decode("latin-1")}
    elif case == "stale timestamp":
        t = now - 181
    elif case == "future timestamp":
        t = now + 181
    if headers is None:
        headers = {"Calendly-Webhook-Signature": sign(key, t, body)}
    response = await hub.client.post("/hooks/calendly", data=sent, headers=headers)
    assert response.status == 401
    answer = await response.json()
    assert answer["error"] == "invalid_signature"
    assert detail in answer["detail"]
    assert await keys_under(hub.prefix) == []


async def test_timestamp_at_the_edge_of_the_tolerance_is_accepted(start_hub) -> None:
    hub = await start_hub()
    response = await hub.post_calendly(
        fixture_bytes("calendly/invitee_created.json"), t=hub.clock.now() - 180
    )
    assert response.status == 202


async def test_malformed_json_is_400_naming_the_body(start_hub) -> None:
    hub = await start_hub()
    response = await hub.post_calendly(b'{"event": "invitee.created", "payload": {')
    assert response.status == 400
    answer = await response.json()
    assert answer["error"] == "invalid_payload"
    assert answer["field"] == "(body)"
    assert "not valid JSON" in answer["detail"]
    assert await keys_under(hub.prefix) == []


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (
            lambda p: p["payload"]["scheduled_event"].pop("start_time"),
            "payload.scheduled_event.start_time",
        ),
        (
            lambda p: p["payload"]["scheduled_event"].__setitem__("end_time", 1764754500),
            "payload.scheduled_event.end_time",
        ),
        (lambda p: p["payload"].__setitem__("status", "maybe"), "payload.status"),
        (
            lambda p: p["payload"]["scheduled_event"].__setitem__(
                "start_time", "2026-02-30T09:00:00Z"
            ),
            "payload.scheduled_event.start_time",
        ),
        (
            lambda p: p["payload"]["scheduled_event"].__setitem__(
                "start_time", "2026-12-03T09:30:00Z\n"
            ),
            "payload.scheduled_event.start_time",
        ),
        (
            lambda p: p["payload"]["scheduled_event"].__setitem__(
                "start_time", "2026-12-03T09:30:00"
            ),
            "payload.scheduled_event.start_time",
        ),
        (lambda p: p.pop("payload"), "payload"),
    ],
)
async def test_schema_failure_is_400_naming_the_field(start_hub, mutate, field) -> None:
    hub = await start_hub()
    payload = fixture_json("calendly/invitee_created.json")
    mutate(payload)
    response = await hub.post_calendly(json.dumps(payload).encode())
    assert response.status == 400
    answer = await response.json()
    assert answer["field"] == field
    assert field in answer["detail"]
    assert await keys_under(hub.prefix) == []


async def test_a_body_in_a_content_encoding_it_is_not_in_is_400(start_hub) -> None:
    hub = await start_hub()
    body = fixture_bytes("calendly/invitee_created.json")
    headers = {
        "Calendly-Webhook-Signature": sign(SIGNING_KEY, int(hub.clock.now()), body),
        "Content-Encoding": "gzip",
    }
    response = await hub.client.post("/hooks/calendly", data=body, headers=headers)
    assert response.status == 400
    assert (await response.json())["field"] == "(body)"
    assert await keys_under(hub.prefix) == []


async def test_unknown_source_is_404(start_hub) -> None:
    hub = await start_hub()
    response = await hub.client.post("/hooks/acuity", data=b"{}")
    assert response.status == 404
    assert (await response.json())["error"] == "unknown_source"


async def test_body_over_the_limit_is_413(start_hub) -> None:
    hub = await start_hub(server__max_body="1KiB")
    response = await hub.post_calendly(fixture_bytes("calendly/invitee_created.json"))
    assert response.status == 413
    assert (await response.json())["error"] == "payload_too_large"
    assert await keys_under(hub.prefix) == []


async def test_unknown_calendly_event_is_accepted_and_ignored(start_hub) -> None:
    hub = await start_hub()
    body = json.dumps(
        {
            "event": "routing_form_submission.created",
            "created_at": "2026-11-20T08:15:00Z",
            "payload": {"routing_form": "https://api.calendly.com/routing_forms/RF1"},
        }
    ).encode()
    response = await hub.post_calendly(body)
    assert response.status == 202
    event_id = (await response.json())["id"]
    assert await hub.worker.drain() == 1  # the dispatch job, which routes nothing
    assert hub.sink.requests == []
    stats = await hub.store.stats()
    assert (stats.due, stats.in_flight, stats.dead) == (0, 0, 0)
    assert (await hub.store.get_event(event_id)).source == "calendly"


async def test_health_and_readiness(start_hub) -> None:
    hub = await start_hub()
    assert (await hub.client.get("/healthz")).status == 200
    ready = await hub.client.get("/readyz")
    assert ready.status == 200
    assert (await ready.json())["status"] == "ready"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_without_redis_readyz_fails_and_intake_answers_503(start_hub) -> None:
    hub = await start_hub(store__url=f"redis://127.0.0.1:{_closed_port()}/0")
    assert (await hub.client.get("/healthz")).status == 200
    ready = await hub.client.get("/readyz")
    assert ready.status == 503
    assert (await ready.json())["status"] == "unavailable"
    response = await hub.post_calendly(fixture_bytes("calendly/invitee_created.json"))
    assert response.status == 503
    assert response.headers["Retry-After"] == "5"
    assert (await response.json())["error"] == "store_unavailable"


async def test_metrics_count_webhooks_by_outcome(start_hub) -> None:
    hub = await start_hub()
    await hub.accept("calendly/invitee_created.json")
    await hub.client.post("/hooks/calendly", data=b"{}")
    text = await (await hub.client.get("/metrics")).text()
    assert 'hub_webhooks_total{outcome="accepted",source="calendly"} 1.0' in text
    assert 'hub_webhooks_total{outcome="invalid_signature",source="calendly"} 1.0' in text


@pytest.mark.parametrize(
    ("path", "header"),
    [
        ("/hooks/calendly", b"Calendly-Webhook-Signature: t=1,v1=\xff\xfe"),
        ("/hooks/cronofy", b"Cronofy-HMAC-SHA256: \xff\xfe"),
    ],
)
async def test_header_bytes_that_are_no_text_are_401_not_500(start_hub, path, header) -> None:
    import asyncio

    hub = await start_hub(
        sources__cronofy={"connector": "cronofy", "client_secrets": ["cronofy-secret-0123456789"]}
    )
    body = b'{"notification": {"type": "change"}}'
    reader, writer = await asyncio.open_connection("127.0.0.1", hub.client.server.port)
    writer.write(
        b"POST "
        + path.encode()
        + b" HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\n"
        + header
        + b"\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n"
        + b"Connection: close\r\n\r\n"
        + body
    )
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    assert status_line.split()[1] == b"401"
    assert await keys_under(hub.prefix) == []
