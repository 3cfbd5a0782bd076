"""The admin API against a real Redis: every endpoint, both roles, and the errors."""

from __future__ import annotations

import redis.asyncio as aioredis
import structlog
from structlog.testing import capture_logs

from hub.model import booking_uuid
from tests.admin_helpers import ADMIN, HASHED, OPERATOR, VIEWER, bearer, booking_body
from tests.conftest import REDIS_URL

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OUTCOME_ROUTE = {
    "name": "outcomes",
    "on": "meeting_outcome_changed",
    "when": 'event.outcome.value == "no_show"',
    "send": [{"to": "hook"}],
}
REMINDER = {
    "name": "reminder",
    "on": "before_meeting_starts",
    "offset": "24h",
    "send": [{"to": "inxmail"}],
}


async def admin_hub(start_hub, sink, **overrides):
    overrides.setdefault("admin", ADMIN)
    return await start_hub(**overrides)


async def get(hub, path, token=VIEWER, **params):
    response = await hub.client.get(path, headers=bearer(token), params=params)
    return response.status, await response.json()


async def post(hub, path, body=None, token=OPERATOR):
    response = await hub.client.post(path, headers=bearer(token), json=body)
    return response.status, await response.json()


async def test_without_tokens_the_api_and_console_are_not_there(start_hub) -> None:
    hub = await start_hub()
    for path in ("/api/v1/events", "/api/v1/openapi.json", "/console/"):
        response = await hub.client.get(path, headers=bearer(OPERATOR))
        assert response.status == 404, path


async def test_tokens_roles_and_refusals(start_hub, sink) -> None:
    hub = await admin_hub(start_hub, sink)
    api = "/api/v1/events"
    response = await hub.client.get(api)
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await response.json())["error"] == "unauthorized"
    for headers in (
        bearer("wrong-token-0123456789"),
        {"Authorization": "Basic " + VIEWER},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer " + VIEWER + "\u2028"},
    ):
        assert (await hub.client.get(api, headers=headers)).status == 401, headers
    repeated = [("Authorization", f"Bearer {VIEWER}"), ("Authorization", f"Bearer {VIEWER}")]
    assert (await hub.client.get(api, headers=repeated)).status == 401
    assert (await get(hub, api))[0] == 200  # a viewer reads
    assert (await get(hub, api, token=HASHED))[0] == 200  # a token given as its sha256
    status, body = await post(hub, "/api/v1/dead-letters/replay", {}, token=VIEWER)
    assert (status, body["error"]) == (403, "forbidden")
    assert (await post(hub, "/api/v1/dead-letters/replay", {}, token=HASHED))[0] == 200


async def test_events_list_filters_pages_and_counts_jobs(start_hub, sink) -> None:
    hub = await admin_hub(start_hub, sink)
    ids = []
    for n in range(5):
        email = "Other@Example.org" if n == 3 else "mara.keller@example.org"
        response = await hub.post_calendly(booking_body(n, email))
        ids.append((await response.json())["id"])
        hub.clock.advance(1)
    await hub.worker.drain()

    status, page = await get(hub, "/api/v1/events", limit=2)
    assert status == 200
    assert [item["id"] for item in page["items"]] == ids[::-1][:2]
    first = page["items"][0]
    assert first["source"] == "calendly"
    assert first["name"] == "invitee.created"
    assert first["types"] == ["booking_confirmed"]
    # its dispatch and its deliveries (Inxmail: one message each to client and host)
    assert first["jobs"] == {"done": 1 + len(sink.requests) // 5}
    assert first["booking"]
    seen = [item["id"] for item in page["items"]]
    while page["next_cursor"]:
        status, page = await get(hub, "/api/v1/events", limit=2, cursor=page["next_cursor"])
        seen += [item["id"] for item in page["items"]]
    assert seen == ids[::-1]

    _, by_email = await get(hub, "/api/v1/events", email="other@example.org")
    assert [item["id"] for item in by_email["items"]] == [ids[3]]
    _, by_email = await get(hub, "/api/v1/events", email="nobody@example.org")
    assert by_email["items"] == []
    _, by_type = await get(hub, "/api/v1/events", type="booking_confirmed", source="calendly")
    assert len(by_type["items"]) == 5
    _, by_type = await get(hub, "/api/v1/events", type="booking_cancelled")
    assert by_type["items"] == []
    booking = first["booking"]
    _, by_booking = await get(hub, "/api/v1/events", booking=booking)
    assert [item["id"] for item in by_booking["items"]] == [ids[4]]
    _, by_source = await get(hub, "/api/v1/events", source="cronofy")
    assert by_source["items"] == []
    t0 = hub.clock.datetime().timestamp() - 5
    from datetime import UTC, datetime

    def iso(t: float) -> str:
        return datetime.fromtimestamp(t, UTC).isoformat()

    _, window = await get(hub, "/api/v1/events", since=iso(t0 + 1), until=iso(t0 + 2))
    assert [item["id"] for item in window["items"]] == [ids[2], ids[1]]


async def test_malformed_filters_are_400_naming_the_parameter(start_hub, sink) -> None:
    hub = await admin_hub(start_hub, sink)
    for params, parameter in [
        ({"limit": "0"}, "limit"),
        ({"limit": "x" * 5000}, "limit"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-11-20T08:00:00"}, "since"),  # no zone: ambiguous
        ({"type": "booking_exploded"}, "type"),
        ({"cursor": "%%%not-ours"}, "cursor"),
        ({"email": "no-at-sign"}, "email"),
        ({"source": "a\nb"}, "source"),
        ({"bogus": "1"}, "bogus"),
    ]:
        status, body = await get(hub, "/api/v1/events", **params)
        assert status == 400, params
        assert body["parameter"] == parameter, (params, body)
    response = await hub.client.get("/api/v1/events?limit=1&limit=2", headers=bearer(VIEWER))
    assert (response.status, (await response.json())["parameter"]) == (400, "limit")
    status, body = await get(hub, "/api/v1/jobs", state="sleeping")
    assert (status, body["parameter"]) == (400, "state")
    status, body = await get(hub, "/api/v1/dead-letters", destination="nowhere")
    assert (status, body["parameter"]) == (400, "destination")
    assert "nowhere" in body["detail"]


async def test_event_detail_and_replay(start_hub, sink) -> None:
    hub = await admin_hub(start_hub, sink)
    event_id = (await (await hub.post_calendly(booking_body(1))).json())["id"]
    await hub.worker.drain()
    status, event = await get(hub, f"/api/v1/events/{event_id}")
    assert status == 200
    assert event["payload"]["event"] == "invitee.created"
    assert [c["type"] for c in event["canonical"]] == ["booking_confirmed"]
    kinds = {job["kind"]: job for job in event["job_list"]}
    delivery = kinds["deliver"]
    assert (delivery["state"], delivery["destination"], delivery["route"]) == (
        "done",
        "inxmail",
        "confirmations",
    )
    assert delivery["attempts"][0]["outcome"] == "done"
    assert delivery["message"] is not None

    assert (await get(hub, "/api/v1/events/evt_unknown"))[0] == 404
    with capture_logs() as logs:
        status, answer = await post(hub, f"/api/v1/events/{event_id}/replay", {"resend": True})
    assert status == 200 and answer["replayed"] is True
    assert {
        "event": "admin.action",
        "token": "ops",
        "action": "event.replay",
        "target": event_id,
    }.items() <= next(e for e in logs if e["event"] == "admin.action").items()
    status, again = await post(hub, f"/api/v1/events/{event_id}/replay", {})
    assert (status, again["replayed"], again["job_id"]) == (200, False, answer["job_id"])
    before = len(sink.requests)
    await hub.worker.drain()
    assert len(sink.requests) == 2 * before  # resent to every route
    assert (await post(hub, "/api/v1/events/evt_unknown/replay", {}))[0] == 404
    for body, parameter in [("not json", "body"), ([1], "body"), ({"resend": "x"}, "body.resend")]:
        kwargs = {"data": body} if isinstance(body, str) else {"json": body}
        response = await hub.client.post(
            f"/api/v1/events/{event_id}/replay", headers=bearer(OPERATOR), **kwargs
        )
        assert response.status == 400
        assert (await response.json())["parameter"] == parameter


async def test_booking_timeline_with_reminder_and_outcome(start_hub, sink) -> None:
    hub = await admin_hub(
        start_hub,
        sink,
        destinations__hook={"connector": "webhook", "url": f"{sink.url}/hook", "secrets": [SECRET]},
        routes=[
            {"name": "confirmations", "on": "booking_confirmed", "send": [{"to": "inxmail"}]},
            REMINDER,
            OUTCOME_ROUTE,
        ],
    )
    event_id = await hub.accept("calendly/invitee_created.json")
    await hub.worker.drain()
    _, listed = await get(hub, f"/api/v1/events/{event_id}")
    uid = listed["booking"]
    status, booking = await get(hub, f"/api/v1/bookings/{uid}")
    assert status == 200
    assert booking["sequence"] == 0
    assert booking["snapshot"]["client"]["email"] == "mara.keller@example.org"
    kinds = [entry["kind"] for entry in booking["timeline"]]
    assert kinds == ["event", "message", "message", "trigger"]  # to the client, to the host
    trigger = booking["timeline"][-1]
    assert trigger["state"] == "due"
    assert trigger["at"].startswith("2026-12-02T09:30")  # 24 h before the start, UTC
    assert trigger["local_time"].endswith(booking["snapshot"]["time_zone"] or "UTC")
    assert (await get(hub, "/api/v1/bookings/nope"))[0] == 404

    hub.clock.advance(3600)  # the meeting is over, say
    status, recorded = await post(
        hub, f"/api/v1/bookings/{uid}/outcome", {"outcome": "no_show", "note": "waited 15 min"}
    )
    assert status == 200
    await hub.worker.drain()
    hooked = [r for r in sink.requests if r.path == "/hook"]
    assert len(hooked) == 1
    assert hooked[0].json()["type"] == "meeting_outcome_changed"
    hub.clock.advance(60)
    status, again = await post(hub, f"/api/v1/bookings/{uid}/outcome", {"outcome": "held"})
    await hub.worker.drain()
    assert len([r for r in sink.requests if r.path == "/hook"]) == 1  # the route wants no_show
    _, booking = await get(hub, f"/api/v1/bookings/{uid}")
    events = [e for e in booking["timeline"] if e["kind"] == "event"]
    assert [e["event_id"] for e in events][1:] == [recorded["event_id"], again["event_id"]]
    assert events[1]["types"] == ["meeting_outcome_changed"]
    for body in ({"outcome": "exploded"}, {"outcome": "held", "note": "x" * 3000}, {}):
        status, error = await post(hub, f"/api/v1/bookings/{uid}/outcome", body)
        assert status == 400 and error["parameter"].startswith("body"), body
    assert (await post(hub, "/api/v1/bookings/nope/outcome", {"outcome": "held"}))[0] == 404


async def test_jobs_dead_letters_replay_and_blocked(start_hub, sink) -> None:
    hub = await admin_hub(start_hub, sink)
    sink.default = 503  # the booking's first message is retried; the next waits behind it
    await hub.post_calendly(booking_body(1))
    await hub.worker.drain()
    _, retried = await get(hub, "/api/v1/jobs", state="retry")
    _, blocked = await get(hub, "/api/v1/jobs", state="blocked", destination="inxmail")
    assert len(retried["items"]) == len(blocked["items"]) == 1
    first = retried["items"][0]["id"]
    assert blocked["items"][0]["waits_behind"] == first
    _, destinations = await get(hub, "/api/v1/destinations")
    assert (destinations[0]["due"], destinations[0]["blocked"]) == (1, 1)
    status, conflict = await post(hub, f"/api/v1/jobs/{first}/replay")
    assert (status, conflict["error"]) == (409, "conflict")

    sink.default = 422  # refused for good: dead letters
    hub.clock.advance(3600)
    await hub.worker.drain()
    _, dead = await get(hub, "/api/v1/jobs", state="dead")
    assert {job["destination"] for job in dead["items"]} == {"inxmail"}
    assert len(dead["items"]) == 2
    _, kinds = await get(hub, "/api/v1/jobs", state="done", kind="dispatch")
    assert len(kinds["items"]) == 1
    _, none = await get(hub, "/api/v1/jobs", destination="inxmail", kind="dispatch")
    assert none["items"] == []
    status, job = await get(hub, f"/api/v1/jobs/{first}")
    assert (status, job["state"], job["attempts"][-1]["status"]) == (200, "dead", 422)
    assert [a["status"] for a in job["attempts"]] == [503, 422]
    assert (await get(hub, "/api/v1/jobs/job_unknown"))[0] == 404

    _, letters = await get(hub, "/api/v1/dead-letters", destination="inxmail")
    assert {j["id"] for j in letters} == {j["id"] for j in dead["items"]}
    _, destinations = await get(hub, "/api/v1/destinations")
    assert destinations[0]["dead"] == 2
    assert destinations[0]["last_failure"] is not None
    assert "422" in (destinations[0]["last_error"] or "")

    sink.default = 202
    with capture_logs() as logs:
        assert (await post(hub, f"/api/v1/jobs/{first}/replay"))[0] == 200
    assert next(e for e in logs if e["event"] == "admin.action")["target"] == first
    assert (await post(hub, "/api/v1/jobs/job_unknown/replay"))[0] == 404
    status, count = await post(hub, "/api/v1/dead-letters/replay", {"destination": "inxmail"})
    assert (status, count) == (200, {"replayed": 1})
    await hub.worker.drain()
    _, letters = await get(hub, "/api/v1/dead-letters")
    assert letters == []
    _, destinations = await get(hub, "/api/v1/destinations")
    assert destinations[0]["last_success"] is not None
    status, error = await post(hub, "/api/v1/dead-letters/replay", {"destination": "nowhere"})
    assert (status, error["parameter"]) == (400, "destination")


async def test_destinations_enable_and_stats(start_hub, sink) -> None:
    hub = await admin_hub(start_hub, sink)
    sink.default = 410  # gone: the destination is disabled
    await hub.post_calendly(booking_body(1))
    await hub.worker.drain()
    _, destinations = await get(hub, "/api/v1/destinations")
    assert (destinations[0]["state"], destinations[0]["disabled"]) == ("disabled", True)
    assert "410" in destinations[0]["reason"]
    status, enabled = await post(hub, "/api/v1/destinations/inxmail/enable")
    assert (status, enabled["state"], enabled["disabled"]) == (200, "closed", False)
    assert (await post(hub, "/api/v1/destinations/nowhere/enable"))[0] == 404
    status, stats = await get(hub, "/api/v1/stats")
    assert status == 200
    assert stats["jobs"]["dead"]["deliver"] == 1
    assert stats["jobs"]["due"]["deliver"] == 1  # the next, held while it was disabled
    assert stats["jobs"]["done"]["dispatch"] == 1
    assert len(stats["deliveries_per_minute"]) == 60
    assert stats["deliveries_per_minute"][-1]["dead"] == 1
    assert stats["oldest_due_seconds"] == 0


async def test_metrics_gauges_and_counters(start_hub, sink) -> None:
    hub = await admin_hub(start_hub, sink)
    sink.default = 422
    await hub.post_calendly(booking_body(1))
    await hub.post_calendly(booking_body(2))
    await hub.dispatch()
    hub.clock.advance(30)
    text = await (await hub.client.get("/metrics")).text()
    assert 'hub_jobs{kind="deliver",state="due"} 2.0' in text
    assert 'hub_jobs{kind="deliver",state="blocked"} 2.0' in text  # behind the first ones
    assert "hub_oldest_due_seconds 30.0" in text
    await hub.worker.drain()
    text = await (await hub.client.get("/metrics")).text()
    assert 'hub_dead_letters{destination="inxmail"} 4.0' in text
    assert 'hub_jobs{kind="deliver",state="dead"} 4.0' in text
    assert 'hub_circuit_open{destination="inxmail"} 0.0' in text
    assert 'hub_deliveries_total{destination="inxmail",outcome="dead"} 4.0' in text
    sink.default = 202
    await post(hub, "/api/v1/dead-letters/replay", {})
    await hub.worker.drain()
    text = await (await hub.client.get("/metrics")).text()
    assert 'hub_deliveries_total{destination="inxmail",outcome="done"} 4.0' in text
    assert "hub_delivery_latency_seconds_count 4.0" in text
    assert 'hub_dead_letters{destination="inxmail"} 0.0' in text


async def test_job_logs_name_destination_route_event_and_booking(start_hub, sink) -> None:
    hub = await admin_hub(start_hub, sink, routes=[
        {"name": "confirmations", "on": "booking_confirmed", "send": [{"to": "inxmail"}]},
        REMINDER,
    ])  # fmt: skip
    structlog.reset_defaults()
    with capture_logs() as logs:
        event_id = await hub.accept("calendly/invitee_created.json")
        await hub.worker.drain()
    routed = next(e for e in logs if e["event"] == "dispatch.routed")
    delivery = routed["deliveries"][0]
    assert delivery["job_id"].startswith("job_") and delivery["destination"] == "inxmail"
    assert routed["timers"][0]["fires_at"].startswith("2026-12-02T09:30")
    done = next(e for e in logs if e["event"] == "job.done" and e["kind"] == "deliver")
    uid = booking_uuid("https://api.calendly.com/scheduled_events/GBGBDCAADAEDCRZ2")
    assert done["destination"] == "inxmail"
    assert done["route"] == "confirmations"
    assert done["event_id"] == event_id
    assert done["job_id"] == delivery["job_id"]
    assert done["booking"]
    dispatch = next(e for e in logs if e["event"] == "job.done" and e["kind"] == "dispatch")
    assert dispatch["booking"] == done["booking"]
    assert uid  # the booking's uid is derived from the provider's event


async def test_with_encryption_no_email_sits_in_redis(start_hub, sink, redis_prefix) -> None:
    from hub.crypto import new_key

    old, new = new_key(), new_key()
    hub = await admin_hub(start_hub, sink, store__encryption_keys=[old])
    await hub.post_calendly(booking_body(1, "secret.person@example.org"))
    await hub.worker.drain()
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in client.scan_iter(f"{redis_prefix}:*")]
        dump = b" ".join(keys)
        for key in keys:
            kind = (await client.type(key)).decode()
            if kind == "hash":
                dump += b" ".join(b"%s=%s" % kv for kv in (await client.hgetall(key)).items())
            elif kind == "string":
                dump += await client.get(key) or b""
            elif kind == "zset":
                dump += b" ".join(await client.zrange(key, 0, -1))
            elif kind == "list":
                dump += b" ".join(await client.lrange(key, 0, -1))
            elif kind == "set":
                dump += b" ".join(await client.smembers(key))
    finally:
        await client.aclose()
    assert b"secret.person" not in dump.lower()
    _, found = await get(hub, "/api/v1/events", email="Secret.Person@example.org")
    assert len(found["items"]) == 1
    # after a key rotation the old digests are still found
    rotated = await admin_hub(start_hub, sink, store__encryption_keys=[new, old])
    _, found = await get(rotated, "/api/v1/events", email="secret.person@example.org")
    assert len(found["items"]) == 1


async def test_hostile_bodies_and_an_unreachable_store(start_hub, sink) -> None:
    hub = await admin_hub(start_hub, sink)
    url = "/api/v1/dead-letters/replay"
    deep = "[" * 5000 + "]" * 5000
    for data, status in (
        (deep, 400),
        ('{"destination": "' + "x" * 200_000 + '"}', 413),
        ('{"destination": "in\u2028xmail"}', 400),
        ('{"destination": null, "since": "2026-13-45T99:00Z"}', 400),
    ):
        response = await hub.client.post(url, data=data, headers=bearer(OPERATOR))
        assert response.status == status, data[:40]
        assert (await response.json())["parameter"].startswith("body")
    down = await admin_hub(start_hub, sink, store__url="redis://127.0.0.1:1/0")
    for path in ("/api/v1/events", "/api/v1/stats", "/api/v1/destinations"):
        response = await down.client.get(path, headers=bearer(VIEWER))
        assert response.status == 503, path
        assert (await response.json())["error"] == "store_unavailable"


async def test_every_operation_wants_a_token_and_every_action_an_operator(start_hub, sink) -> None:
    from hub.admin.api import OPERATIONS

    hub = await admin_hub(start_hub, sink)
    for operation in OPERATIONS:
        path = "/api/v1" + operation.path.replace("{id}", "x").replace("{name}", "inxmail")
        response = await hub.client.request(operation.method, path)
        assert response.status == 401, path
        viewer = await hub.client.request(operation.method, path, headers=bearer(VIEWER))
        if operation.operator:
            assert viewer.status == 403, path
            assert (await viewer.json())["error"] == "forbidden"
        else:
            assert viewer.status in (200, 404), path
    assert all(op.operator == (op.method == "POST") for op in OPERATIONS)


async def test_dead_letters_leave_the_indexes_with_the_dead_letter_retention(
    start_hub, sink
) -> None:
    hub = await admin_hub(start_hub, sink, store__dead_letter_retention="1d")
    sink.default = 422
    await hub.post_calendly(booking_body(1))
    await hub.worker.drain()
    _, stats = await get(hub, "/api/v1/stats")
    assert stats["jobs"]["dead"]["deliver"] == 2
    hub.clock.advance(2 * 86400)
    await hub.post_calendly(booking_body(2))
    await hub.worker.drain()
    _, stats = await get(hub, "/api/v1/stats")
    assert stats["jobs"]["dead"]["deliver"] == 2  # the first two are past the retention
    _, destinations = await get(hub, "/api/v1/destinations")
    assert destinations[0]["dead"] == 2
    _, letters = await get(hub, "/api/v1/dead-letters")
    assert len(letters) == 2
