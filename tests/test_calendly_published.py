"""Calendly's published webhook shape: no embedded scheduled_event, only its URI.

Accepted at intake (a 4xx would make Calendly retry and then disable the subscription);
the worker fetches the scheduled event from Calendly's API with the source's token, or
dead-letters the webhook with a reason that says what to set, and a replay delivers it.
"""

from __future__ import annotations

import json

import pytest
from aiohttp import web

from tests.conftest import fixture_bytes

TOKEN = "calendly-api-token-0123456789"
EVENT = {
    "uri": "https://api.calendly.com/scheduled_events/PUBEVT000001",
    "name": "Second opinion (30 min)",
    "status": "active",
    "start_time": "2026-12-04T13:00:00.000000Z",
    "end_time": "2026-12-04T13:30:00.000000Z",
    "event_type": "https://api.calendly.com/event_types/TYPE00000003",
    "location": None,
    "event_memberships": [
        {"user": "https://api.calendly.com/users/HOSTUSER0009", "user_name": "Lea Brunner"}
    ],
    "event_guests": [],
    "created_at": "2026-11-20T08:15:41.000000Z",
    "updated_at": "2026-11-20T08:15:41.000000Z",
}


@pytest.fixture
async def calendly_api(aiohttp_server):
    """A stand-in for Calendly's API that checks the bearer token."""
    seen: list[str] = []

    async def scheduled_event(request: web.Request) -> web.Response:
        seen.append(request.path)
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"title": "Unauthenticated"}, status=401)
        if request.match_info["uuid"] != "PUBEVT000001":
            return web.json_response({"title": "Resource Not Found"}, status=404)
        return web.json_response({"resource": EVENT})

    app = web.Application()
    app.router.add_get("/scheduled_events/{uuid}", scheduled_event)
    server = await aiohttp_server(app)
    server.seen = seen
    return server


def _source(api_url: str | None, token: str | None = TOKEN) -> dict:
    source = {"connector": "calendly", "signing_key": "${CALENDLY_SIGNING_KEY}"}
    if api_url:
        source |= {"api_token": token, "api_url": api_url}
    return source


@pytest.mark.parametrize(
    "fixture",
    ["calendly/published_invitee_created.json", "calendly/published_invitee_canceled.json"],
)
async def test_the_published_examples_are_delivered_end_to_end(
    start_hub, calendly_api, fixture
) -> None:
    hub = await start_hub(sources__calendly=_source(str(calendly_api.make_url(""))))
    await hub.accept(fixture)
    await hub.worker.drain()
    assert calendly_api.seen == ["/scheduled_events/PUBEVT000001"]
    assert hub.sink.requests
    assert all(r.json()["event"].startswith("calenso.booking.") for r in hub.sink.requests)
    assert await hub.store.dead_letters() == []
    text = hub.sink.requests[0].body.decode()
    assert "Noah" in text and "Weber" in text  # the name, from name or first and last


async def test_without_a_token_the_dead_letter_says_what_to_set_and_replay_delivers(
    start_hub, calendly_api
) -> None:
    bare = await start_hub()
    await bare.accept("calendly/published_invitee_created.json")
    await bare.worker.drain()
    [dead] = await bare.store.dead_letters()
    assert "set api_token on source 'calendly'" in dead.reason
    assert bare.sink.requests == []
    fixed = await start_hub(sources__calendly=_source(str(calendly_api.make_url(""))))
    assert await fixed.store.replay(dead.id, fixed.clock.now())
    await fixed.worker.drain()
    assert fixed.sink.requests
    assert await fixed.store.dead_letters() == []


async def test_a_refused_token_is_a_dead_letter_naming_the_status(start_hub, calendly_api) -> None:
    hub = await start_hub(
        sources__calendly=_source(str(calendly_api.make_url("")), token="not-the-right-token")
    )
    await hub.accept("calendly/published_invitee_created.json")
    await hub.worker.drain()
    [dead] = await hub.store.dead_letters()
    assert "answered 401" in dead.reason and "api_token" in dead.reason
    assert TOKEN not in dead.reason


@pytest.mark.parametrize(
    "tail",
    [
        "..",
        "%2e%2e",
        "PUBEVT000001%2F..%2Fusers%2Fme",
        "PUBEVT000001\r\nX-Injected: 1",
        "PUBEVT 000001",
    ],
)
async def test_a_scheduled_event_uri_with_no_plain_id_is_a_dead_letter_and_never_fetched(
    start_hub, calendly_api, tail
) -> None:
    """Signed, schema-valid, and yet its last segment would make the API call (with the
    bearer token) ask for another path: accepted, then a dead letter saying why."""
    hub = await start_hub(sources__calendly=_source(str(calendly_api.make_url(""))))
    payload = json.loads(fixture_bytes("calendly/published_invitee_created.json"))
    payload["payload"]["event"] = f"https://api.calendly.com/scheduled_events/{tail}"
    response = await hub.post_calendly(json.dumps(payload).encode())
    assert response.status == 202, await response.text()
    await hub.worker.drain()
    [dead] = await hub.store.dead_letters()
    assert "does not end in an id" in dead.reason
    assert tail not in dead.reason and TOKEN not in dead.reason
    assert calendly_api.seen == []
    assert hub.sink.requests == []


async def test_every_fixture_passes_intake(start_hub) -> None:
    hub = await start_hub()
    for name in (
        "invitee_created",
        "invitee_canceled",
        "published_invitee_created",
        "published_invitee_canceled",
    ):
        response = await hub.post_calendly(fixture_bytes(f"calendly/{name}.json"))
        assert response.status == 202, await response.text()
