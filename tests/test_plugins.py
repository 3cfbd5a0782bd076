"""Plugins: each hook, and a third-party connector pair going end to end."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hub import hookimpl, hookspecs
from hub.app import create_app, make_worker
from hub.config import parse_config
from hub.connector import (
    Delivery,
    DeliveryResult,
    DestinationConnector,
    SourceConnector,
)
from hub.errors import ConfigError, SignatureError
from hub.model import Booking, BookingEvent, Person, booking_uuid
from hub.plugins import (
    DEFAULT_PLUGINS,
    destination_connectors,
    get_plugin_manager,
    source_connectors,
)
from tests.conftest import REDIS_URL

RECEIVED: list[Delivery] = []


class TokenSource(SourceConnector):
    """A provider that signs with a shared token in a header."""

    name = "token"
    schema = {
        "type": "object",
        "required": ["who", "start", "end"],
        "properties": {"who": {"type": "string"}, "start": {"type": "string"}},
    }

    def verify(self, headers, body, now) -> None:
        if headers.get("X-Token") != "let-me-in":
            raise SignatureError("bad token")

    async def normalize(self, payload, context) -> list[BookingEvent]:
        booking = Booking(
            id=payload["who"],
            uid=booking_uuid(payload["who"]),
            start=payload["start"],
            end=payload["end"],
            client=Person(email=payload["who"]),
        )
        return [
            BookingEvent(
                id=context.event_id(0),
                type="booking_confirmed",
                source=context.source,
                inbound_event_id=context.inbound_event_id,
                occurred_at=payload["start"],
                received_at=context.received_at,
                booking=booking,
                raw=payload,
            )
        ]


class ListDestination(DestinationConnector):
    name = "list"

    def plan(self, event, action) -> list[dict[str, Any]]:
        return [{"copy": 1}, {"copy": 2}]

    async def deliver(self, delivery: Delivery) -> DeliveryResult:
        RECEIVED.append(delivery)
        return DeliveryResult(status=200)


class ThirdPartyPlugin:
    @hookimpl
    def register_sources(self):
        return [TokenSource]

    @hookimpl
    def register_destinations(self):
        return [ListDestination]


def plugin_manager():
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(ThirdPartyPlugin(), name="third-party")
    return pm


def test_the_hookspecs_are_the_ones_tested_here() -> None:
    declared = {name for name in dir(hookspecs) if name.startswith("register_")}
    assert declared == {"register_sources", "register_destinations"}


def test_built_in_connectors_are_registered_as_plugins() -> None:
    pm = get_plugin_manager(load_entrypoints=False)
    assert all(pm.get_plugin(name) is not None for name in DEFAULT_PLUGINS)
    assert set(source_connectors(pm)) == {"calendly", "cronofy", "webhook"}
    assert set(destination_connectors(pm)) == {"auvious", "email_invite", "inxmail", "webhook"}


def test_register_sources_and_destinations_add_connectors() -> None:
    pm = plugin_manager()
    assert source_connectors(pm)["token"] is TokenSource
    assert destination_connectors(pm)["list"] is ListDestination


def test_plugins_load_from_the_hub_entry_point_group(tmp_path, monkeypatch) -> None:
    package = tmp_path / "hub_acme_connector.py"
    package.write_text(
        "from hub import hookimpl\n"
        "from tests.test_plugins import ListDestination\n"
        "class Acme(ListDestination):\n"
        "    name = 'acme'\n"
        "@hookimpl\n"
        "def register_destinations():\n"
        "    return [Acme]\n"
    )
    dist = tmp_path / "hub_acme_connector-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: hub-acme-connector\nVersion: 1.0\n"
    )
    (dist / "entry_points.txt").write_text("[hub]\nacme = hub_acme_connector\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    assert "acme" in destination_connectors(get_plugin_manager())
    assert "acme" not in destination_connectors(get_plugin_manager(load_entrypoints=False))


def test_two_plugins_may_not_claim_one_connector_name() -> None:
    class Impostor:
        @hookimpl
        def register_destinations(self):
            class Inxmail(ListDestination):
                name = "inxmail"

            return [Inxmail]

    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(Impostor())
    with pytest.raises(ConfigError, match="two plugins provide a destination connector named"):
        destination_connectors(pm)


CONFIG = f"""
store: {{url: "{REDIS_URL}", prefix: "PREFIX"}}
sources:
  partner: {{connector: token}}
destinations:
  log: {{connector: list}}
routes:
  - {{name: all, on: [booking_confirmed], send: [{{to: log}}]}}
"""


async def test_a_third_party_source_and_destination_work_end_to_end(
    aiohttp_client, redis_prefix
) -> None:
    RECEIVED.clear()
    pm = plugin_manager()
    config = parse_config(CONFIG.replace("PREFIX", redis_prefix), pm, environ={})
    app = create_app(config, plugin_manager=pm)
    client = await aiohttp_client(app)
    body = json.dumps(
        {"who": "ada@example.org", "start": "2026-12-01T10:00:00Z", "end": "2026-12-01T11:00:00Z"}
    )
    refused = await client.post("/hooks/partner", data=body)
    assert refused.status == 401
    invalid = await client.post("/hooks/partner", data="{}", headers={"X-Token": "let-me-in"})
    assert invalid.status == 400
    assert (await invalid.json())["field"] == "who"
    accepted = await client.post("/hooks/partner", data=body, headers={"X-Token": "let-me-in"})
    assert accepted.status == 202

    assert await make_worker(app).drain() == 3
    assert sorted(d.message["copy"] for d in RECEIVED) == [1, 2]
    assert {d.event.booking.client.email for d in RECEIVED} == {"ada@example.org"}
    assert {d.route for d in RECEIVED} == {"all"}
    assert len({d.id for d in RECEIVED}) == 2
