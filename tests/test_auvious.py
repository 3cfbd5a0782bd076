"""Auvious appointments, against a local server that implements the endpoints and checks
the bearer token."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from aiohttp import web

from hub.schemas import SchemaValidator
from tests.test_scheduling import NEW_START, booking, post, reschedule

_SCHEMA = json.loads(
    (Path(__file__).parent.parent / "schemas/auvious/appointment.json").read_text()
)
SCHEDULE = SchemaValidator("schedule", {**_SCHEMA, "$ref": "#/$defs/schedule"})
RESCHEDULE = SchemaValidator("reschedule", {**_SCHEMA, "$ref": "#/$defs/reschedule"})


class Auvious:
    """A small Auvious: OAuth client credentials, appointments, token checks."""

    def __init__(self) -> None:
        self.tokens: dict[str, bool] = {}  # token → still valid
        self.token_requests = 0
        self.appointments: dict[str, dict] = {}
        self.calls: list[tuple[str, str]] = []
        self.ids = (f"appt-{n}" for n in itertools.count(1))

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/security/oauth/token", self.token)
        app.router.add_post("/api/appointments/", self.create)
        app.router.add_put("/api/appointments/reschedule/", self.reschedule)
        app.router.add_delete("/api/appointments/{id}", self.delete)
        return app

    async def token(self, request: web.Request) -> web.Response:
        query = request.query
        if (query.get("grant_type"), query.get("client_id"), query.get("client_secret")) != (
            "client_credentials",
            "hub-client",
            "hub-secret",
        ):
            return web.json_response({"error": "invalid_client"}, status=401)
        self.token_requests += 1
        token = f"jwt-{self.token_requests}." + "x" * 2000  # as long as a real JWT
        self.tokens[token] = True
        return web.json_response(
            {"access_token": token, "token_type": "bearer", "expires_in": 3600}
        )

    def _authorized(self, request: web.Request) -> bool:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        return self.tokens.get(token, False)

    async def create(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response({}, status=401)
        body = await request.json()
        SCHEDULE.check(body)  # the request shape of the appointments API
        appointment = {**body, "id": next(self.ids)}
        self.appointments[appointment["id"]] = appointment
        self.calls.append(("POST", appointment["id"]))
        return web.json_response(appointment)

    async def reschedule(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response({}, status=401)
        body = await request.json()
        RESCHEDULE.check(body)
        self.appointments[body["id"]].update(start=body["start"], duration=body["duration"])
        self.calls.append(("PUT", body["id"]))
        return web.json_response(self.appointments[body["id"]])

    async def delete(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response({}, status=401)
        self.calls.append(("DELETE", request.match_info["id"]))
        if self.appointments.pop(request.match_info["id"], None) is None:
            return web.json_response({}, status=404)
        return web.Response(status=204)


@pytest.fixture
async def auvious(aiohttp_server):
    server = Auvious()
    running = await aiohttp_server(server.app())
    server.url = str(running.make_url("")).rstrip("/")
    return server


async def start(start_hub, auvious, **destination):
    return await start_hub(
        destinations__video={
            "connector": "auvious",
            "base_url": auvious.url,
            "client_id": "hub-client",
            "client_secret": "hub-secret",
            "application_id": "app-1",
            **destination,
        },
        routes=[
            {
                "name": "video",
                "on": ["booking_confirmed", "booking_rescheduled", "booking_cancelled"],
                "send": [{"to": "video"}],
            }
        ],
    )


async def test_appointments_follow_the_booking(start_hub, auvious) -> None:
    hub = await start(start_hub, auvious)
    await post(hub, booking())
    await hub.worker.drain()
    [(verb, appointment_id)] = auvious.calls
    appointment = auvious.appointments[appointment_id]
    assert verb == "POST"
    assert appointment["applicationId"] == "app-1"
    assert appointment["start"] == "2026-12-03T09:30:00Z"
    assert appointment["duration"] == "PT45M"
    assert appointment["timezone"] == "Europe/Zurich"
    assert appointment["customer"]["contact"]["primaryEmail"] == "mara.keller@example.org"
    assert appointment["customer"]["name"] == {"firstName": "Mara", "lastName": "Keller"}

    canceled, created = reschedule()
    await post(hub, canceled)
    await post(hub, created)
    await hub.worker.drain()
    assert auvious.calls[1] == ("PUT", appointment_id)  # the same appointment, moved
    assert auvious.appointments[appointment_id]["start"] == NEW_START.isoformat().replace(
        "+00:00", "Z"
    )

    cancel = json.loads(created)
    cancel["event"] = "invitee.canceled"
    cancel["payload"].update(
        status="canceled",
        old_invitee=None,
        cancellation={"reason": "ill", "canceler_type": "invitee"},
    )
    await post(hub, json.dumps(cancel).encode())
    await hub.worker.drain()
    assert auvious.calls[2] == ("DELETE", appointment_id)
    assert auvious.appointments == {}
    assert auvious.token_requests == 1  # one token served all of it


async def test_a_revoked_token_is_fetched_again_once(start_hub, auvious) -> None:
    hub = await start(start_hub, auvious)
    await post(hub, booking(1))
    await hub.worker.drain()
    for token in auvious.tokens:
        auvious.tokens[token] = False  # revoked behind the hub's back
    await post(hub, booking(2))
    await hub.worker.drain()
    assert auvious.token_requests == 2
    assert [verb for verb, _ in auvious.calls] == ["POST", "POST"]


async def test_an_expiring_token_is_renewed_before_it_expires(start_hub, auvious) -> None:
    hub = await start(start_hub, auvious)
    await post(hub, booking(1))
    await hub.worker.drain()
    hub.clock.advance(3600 - 59)  # within the 60 s margin
    await post(hub, booking(2))
    await hub.worker.drain()
    assert auvious.token_requests == 2


async def test_wrong_client_credentials_are_a_dead_letter(start_hub, auvious) -> None:
    hub = await start(start_hub, auvious, client_secret="guess")
    await post(hub, booking())
    await hub.worker.drain()
    [dead] = await hub.store.dead_letters()
    assert "refused the client credentials" in dead.reason
    assert auvious.calls == []


def test_auvious_refuses_routes_it_cannot_follow() -> None:
    from hub.config import parse_config
    from hub.errors import ConfigError
    from hub.plugins import get_plugin_manager
    from tests.conftest import ENVIRON, config_yaml

    text = config_yaml(
        "p",
        "http://127.0.0.1:9",
        destinations__video={
            "connector": "auvious",
            "base_url": "http://127.0.0.1:9",
            "client_id": "c",
            "client_secret": "s",
            "application_id": "a",
        },
        routes=[{"name": "r", "on": "marked_no_show", "send": [{"to": "video"}]}],
    )
    with pytest.raises(ConfigError, match="Auvious appointments follow"):
        parse_config(text, get_plugin_manager(), environ=ENVIRON)


async def test_concurrent_refusals_fetch_one_new_token(start_hub, auvious) -> None:
    hub = await start(start_hub, auvious)
    await post(hub, booking(1))
    await hub.worker.drain()
    for token in auvious.tokens:
        auvious.tokens[token] = False
    for n in range(2, 6):
        await post(hub, booking(n))
    await hub.worker.drain()  # four deliveries at once, each refused once
    assert auvious.token_requests == 2
    assert [verb for verb, _ in auvious.calls] == ["POST"] * 5
