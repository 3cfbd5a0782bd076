"""Signed webhooks out and in, checked against the standardwebhooks library."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr
from standardwebhooks import Webhook

from connectors.webhook import _key, sign, signer
from hub.model import BookingEvent
from hub.schemas import validator

OLD = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
NEW = "whsec_" + "bmV3LXNlY3JldC1vZi10aGlydHktdHdvLWJ5dGVzISE="


def test_the_libraries_vector_is_the_protocol_sheets() -> None:
    # the vector of the protocol sheet, through the library the tests use as the receiver
    signed = Webhook(OLD).sign(
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        datetime.fromtimestamp(1614265330, UTC),
        '{"test": 2432232314}',
    )
    assert signed == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


@pytest.mark.parametrize(
    "msg_id, body",
    [
        ("msg_p5jXN8AQM9LWM0D4loKWxJek", b'{"test": 2432232314}'),
        ("job_01", b""),
        ("job_\u2028\r\n", '{"name": "Zo\u00eb \u2028 \U0001f600"}'.encode()),
        ("job_big", b'{"x": "' + b"\\u0000" * 40_000 + b'"}'),
    ],
)
def test_the_hubs_signatures_are_the_libraries(msg_id: str, body: bytes) -> None:
    moment = 1614265330
    for secret in (OLD, NEW):
        expected = Webhook(secret).sign(msg_id, datetime.fromtimestamp(moment, UTC), body.decode())
        keyed = signer(_key(SecretStr(secret)))
        # the keyed state is only copied: it signs the next message as it did the first
        assert sign(keyed, msg_id.encode(), moment, body) == expected
        assert sign(keyed, b"msg_other", moment, b"{}") == Webhook(secret).sign(
            "msg_other", datetime.fromtimestamp(moment, UTC), "{}"
        )
        assert sign(keyed, msg_id.encode(), moment, body) == expected


async def start(start_hub, sink, **overrides):
    hub = await start_hub(
        destinations__hooks={
            "connector": "webhook",
            "url": f"{sink.url}/in",
            "secrets": [NEW, OLD],
            "retry": {"schedule": ["10s"], "attempts": 3},
        },
        **overrides,
    )
    hub.clock.advance(time.time() - hub.clock.now())  # the library verifies on the wall clock
    return hub


ALL = [{"name": "all", "on": ["booking_confirmed"], "send": [{"to": "hooks"}]}]


async def test_deliveries_verify_under_each_secret_and_keep_their_id(start_hub, sink) -> None:
    hub = await start(start_hub, sink, routes=ALL)
    sink.statuses.append(503)
    await hub.accept("calendly/invitee_created.json")
    await hub.worker.drain()
    hub.clock.advance(15)
    await hub.worker.drain()
    first, second = sink.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"]  # across retries
    for secret in (OLD, NEW):  # signed under both while the secret rotates
        payload = Webhook(secret).verify(second.body, second.headers)
    assert payload["type"] == "booking_confirmed"
    assert payload["data"]["booking"]["client"]["email"] == "mara.keller@example.org"
    validator("webhook/outbound.json").check(payload)
    validator("booking-event.json").check(payload["data"])
    # the event as the model writes it, sent from the stored JSON without a round trip
    event = BookingEvent.model_validate(payload["data"])
    assert (payload["data"], payload["timestamp"]) == (
        event.to_json(),
        event.occurred_at.isoformat(),
    )
    with pytest.raises(Exception, match="No matching signature"):
        Webhook("whsec_" + "b3RoZXItc2VjcmV0LW9mLXRoaXJ0eS10d28tYnl0ZXMh").verify(
            second.body, second.headers
        )


async def test_cel_fields_shape_the_body(start_hub, sink) -> None:
    hub = await start(
        start_hub,
        sink,
        routes=[
            {
                "name": "slim",
                "on": "booking_confirmed",
                "send": [
                    {
                        "to": "hooks",
                        "fields": {
                            "email": "booking.client.email",
                            "starts": "booking.start",
                            "guests": "size(booking.guests)",
                        },
                    }
                ],
            }
        ],
    )
    await hub.accept("calendly/invitee_created.json")
    await hub.worker.drain()
    [request] = sink.requests
    payload = Webhook(OLD).verify(request.body, request.headers)
    assert payload["data"] == {
        "email": "mara.keller@example.org",
        "starts": "2026-12-03T09:30:00Z",
        "guests": 1,
    }


def test_a_field_that_does_not_compile_is_refused_at_load() -> None:
    from hub.config import parse_config
    from hub.errors import ConfigError
    from hub.plugins import get_plugin_manager
    from tests.conftest import ENVIRON, config_yaml

    text = config_yaml(
        "p",
        "http://127.0.0.1:9",
        destinations__hooks={"connector": "webhook", "url": "http://127.0.0.1:9", "secrets": [OLD]},
        routes=[
            {
                "name": "r",
                "on": "booking_confirmed",
                "send": [{"to": "hooks", "fields": {"x": "booking.("}}],
            }
        ],
    )
    with pytest.raises(ConfigError, match=re.escape("field x: `booking.(` does not compile")):
        parse_config(text, get_plugin_manager(), environ=ENVIRON)


SCHEMA = {
    "type": "object",
    "required": ["order", "amount"],
    "properties": {"order": {"type": "string"}, "amount": {"type": "number", "minimum": 0}},
}


async def test_the_generic_source_verifies_checks_and_passes_through(start_hub, sink, tmp_path):
    schema = tmp_path / "orders.json"
    schema.write_text(json.dumps(SCHEMA))
    hub = await start(
        start_hub,
        sink,
        sources__shop={"connector": "webhook", "secrets": [OLD], "schema_file": str(schema)},
        routes=[{"name": "pass", "on": "provider_notification", "send": [{"to": "hooks"}]}],
    )
    sender = Webhook(OLD)

    async def post(
        body: dict, msg_id: str = "msg_1", at: float | None = None, secret: Webhook = sender
    ):
        text = json.dumps(body)
        moment = datetime.fromtimestamp(int(at or hub.clock.now()), UTC)
        headers = {
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(moment.timestamp())),
            "webhook-signature": secret.sign(msg_id, moment, text),
        }
        return await hub.client.post("/hooks/shop", data=text, headers=headers)

    assert (await post({"order": "A-1", "amount": 12.5})).status == 202
    again = await post({"order": "A-1", "amount": 12.5})
    assert (await again.json())["duplicate"] is True  # the same webhook-id
    invalid = await post({"order": "A-2", "amount": -1}, "msg_2")
    assert (invalid.status, (await invalid.json())["field"]) == (400, "amount")
    stale = await post({"order": "A-3", "amount": 1}, "msg_3", at=hub.clock.now() - 3600)
    assert stale.status == 401
    forged = await post({"order": "A-4", "amount": 1}, "msg_4", secret=Webhook(NEW))
    assert forged.status == 401
    await hub.worker.drain()
    [request] = sink.requests
    payload = Webhook(NEW).verify(request.body, request.headers)
    assert payload["data"]["raw"] == {"order": "A-1", "amount": 12.5}
    assert payload["type"] == "provider_notification"


async def test_a_webhook_destination_answering_410_is_disabled(start_hub, sink) -> None:
    hub = await start(start_hub, sink, routes=ALL)
    sink.default = 410
    await hub.accept("calendly/invitee_created.json")
    await hub.worker.drain()
    [state] = await hub.store.destination_states(["hooks"])
    assert state.state == "disabled"
    [dead] = await hub.store.dead_letters()
    assert [(a["outcome"], a["status"]) for a in dead.attempts] == [("dead", 410)]


def test_the_source_accepts_the_protocol_sheets_vector(tmp_path) -> None:
    from connectors.webhook import WebhookSource, WebhookSourceConfig
    from hub.errors import SignatureError

    schema = tmp_path / "any.json"
    schema.write_text("{}")
    source = WebhookSource(
        "s", WebhookSourceConfig(connector="webhook", secrets=[OLD], schema_file=schema)
    )
    headers = {
        "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "webhook-timestamp": "1614265330",
        "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    }
    source.verify(headers, b'{"test": 2432232314}', now=1614265330)
    rotated = {**headers, "webhook-signature": "v1,bm90IGl0 " + headers["webhook-signature"]}
    source.verify(rotated, b'{"test": 2432232314}', now=1614265330)
    with pytest.raises(SignatureError):
        source.verify(headers, b'{"test": 2432232315}', now=1614265330)
    with pytest.raises(SignatureError, match="too far"):
        source.verify(headers, b'{"test": 2432232314}', now=1614265330 + 301)
