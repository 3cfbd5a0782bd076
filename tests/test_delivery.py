"""Delivery you can trust: order per booking, circuit breakers, limits, disabling,
replay, encryption at rest, and a worker that stops without losing its jobs."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import pytest
import redis.asyncio as aioredis

from hub.admin.commands import dlq_list, replay
from hub.admin.service import AdminService
from hub.app import create_app
from hub.appkeys import CONFIG, STORE, WORKER
from hub.crypto import new_key
from hub.errors import BadRequest
from hub.store import Attempt, EndpointPolicy, Job, NewJob
from hub.store.redis import RedisStore
from tests.admin_helpers import booking_body
from tests.conftest import REDIS_URL, Harness, fixture_json, make_config

CREATED = "calendly/invitee_created.json"
CANCELED = "calendly/invitee_canceled.json"


def service_of(hub) -> AdminService:
    """The service layer the commands use, over a test hub's store and clock."""
    return AdminService(hub.client.app[CONFIG], hub.store, hub.clock)


def other_booking(fixture: str, n: int) -> bytes:
    """The fixture webhook for another invitee (another booking)."""
    payload = fixture_json(fixture)
    invitee = payload["payload"]
    invitee["uri"] = invitee["uri"].replace("INV0000000042", f"INV00000001{n:02d}")
    invitee["email"] = f"client{n}@example.org"
    return json.dumps(payload).encode()


async def accept(hub, body: bytes) -> str:
    response = await hub.post_calendly(body)
    assert response.status == 202, await response.text()
    return (await response.json())["id"]


def sent(hub) -> list[tuple[str, str, int]]:
    """(Calenso event, client email) of every request the sink got, in arrival order."""
    out = []
    for request in hub.sink.requests:
        body = request.json()
        out.append(
            (body["event"].removeprefix("calenso.booking."), body["payload"]["customer"]["email"])
        )
    return out


async def test_a_cancellation_never_overtakes_its_confirmation(start_hub) -> None:
    hub = await start_hub()
    failures = iter([500, 500])  # the confirmation's first message to Mara fails twice

    def respond(received):
        body = received.json()
        if body["payload"]["customer"]["email"] == "mara.keller@example.org":
            return next(failures, None)
        return None

    hub.sink.respond = respond
    await hub.accept(CREATED)
    await hub.accept(CANCELED)
    await hub.worker.drain()
    assert sent(hub) == [("inform-customer", "mara.keller@example.org")]

    # another booking is not held up while Mara's waits for its retry
    await accept(hub, other_booking(CREATED, 1))
    await hub.worker.drain()
    assert sent(hub)[1:] == [
        ("inform-customer", "client1@example.org"),
        ("inform-partner", "client1@example.org"),
    ]

    for _ in range(2):
        hub.clock.advance(60)
        await hub.worker.drain()
    mara = [e for e, who in sent(hub) if who == "mara.keller@example.org"]
    assert mara == [
        "inform-customer",  # 500
        "inform-customer",  # 500
        "inform-customer",
        "inform-partner",
        "cancel.inform-customer",
        "cancel.inform-partner",
    ]
    stats = await hub.store.stats()
    assert (stats.due, stats.in_flight, stats.dead) == (0, 0, 0)


async def test_a_dead_letter_does_not_block_the_next_message_of_its_booking(start_hub) -> None:
    hub = await start_hub()
    hub.sink.statuses.append(400)  # the first message is refused for good
    await hub.accept(CREATED)
    await hub.worker.drain()
    assert [e for e, _ in sent(hub)] == ["inform-customer", "inform-partner"]
    assert len(await hub.store.dead_letters()) == 1


CIRCUIT = {"min_requests": 2, "failure_ratio": 0.5, "window": "1m", "open_for": "2m"}
ONE_MESSAGE = [
    {
        "name": "customer",
        "on": ["booking_confirmed"],
        "send": [{"to": "inxmail", "event": "calenso.booking.inform-customer"}],
    }
]


async def test_the_circuit_opens_holds_jobs_without_using_attempts_and_closes(start_hub) -> None:
    hub = await start_hub(
        destinations__inxmail__circuit=CIRCUIT, routes=ONE_MESSAGE, worker__concurrency=1
    )
    hub.sink.statuses.extend([503, 503])
    for n in range(3):
        await accept(hub, other_booking(CREATED, n))
    await hub.worker.drain()

    # two failures of two attempts: the circuit opened before the third was tried
    assert len(hub.sink.requests) == 2
    [state] = await hub.store.destination_states(["inxmail"])
    assert state.state == "open"
    assert state.reason == "2 of 2 attempts failed"
    assert state.open_until == hub.clock.now() + 120

    hub.clock.advance(60)  # the failed jobs' retries are due, the circuit is still open
    assert await hub.worker.drain() == 0
    assert len(hub.sink.requests) == 2

    hub.clock.advance(61)  # open_for is over: one probe, it succeeds, the circuit closes
    await hub.worker.drain()
    [state] = await hub.store.destination_states(["inxmail"])
    assert (state.state, state.reason) == ("closed", "probe succeeded")
    assert len(hub.sink.requests) == 5
    jobs = {r.json()["transactionId"] for r in hub.sink.requests}
    attempts = sorted([len((await hub.store.get_job(j)).attempts) for j in jobs])
    assert attempts == [1, 2, 2]  # the job held while the circuit was open used one
    stats = await hub.store.stats()
    assert (stats.due, stats.dead) == (0, 0)


async def test_a_failed_probe_opens_the_circuit_again(start_hub) -> None:
    hub = await start_hub(
        destinations__inxmail__circuit=CIRCUIT, routes=ONE_MESSAGE, worker__concurrency=1
    )
    hub.sink.statuses.extend([503, 503, 503])
    for n in range(2):
        await accept(hub, other_booking(CREATED, n))
    await hub.worker.drain()
    hub.clock.advance(121)
    await hub.worker.drain()
    assert len(hub.sink.requests) == 3  # one probe only
    [state] = await hub.store.destination_states(["inxmail"])
    assert (state.state, state.reason) == ("open", "probe failed")


async def test_410_gone_dead_letters_the_job_and_disables_the_destination(start_hub) -> None:
    hub = await start_hub(routes=ONE_MESSAGE)
    hub.sink.statuses.append(410)
    await accept(hub, other_booking(CREATED, 1))
    await hub.worker.drain()
    [state] = await hub.store.destination_states(["inxmail"])
    assert state.state == "disabled"
    assert "410" in state.reason

    await accept(hub, other_booking(CREATED, 2))
    hub.clock.advance(3600)
    await hub.worker.drain()
    assert len(hub.sink.requests) == 1  # nothing is sent to a disabled destination
    waiting = await hub.store.stats()
    assert (waiting.due, waiting.dead) == (1, 1)

    await hub.store.enable_destination("inxmail", hub.clock.now())
    hub.clock.advance(60)
    await hub.worker.drain()
    assert len(hub.sink.requests) == 2
    assert hub.sink.requests[1].json()["payload"]["customer"]["email"] == "client2@example.org"


async def test_concurrency_limit_holds_across_workers(start_hub) -> None:
    hub = await start_hub(destinations__inxmail__concurrency=1, routes=ONE_MESSAGE)
    for n in range(3):
        await accept(hub, other_booking(CREATED, n))
    assert await hub.dispatch() == 3
    # a second worker process: its own connection, the same policy from hub.yaml
    elsewhere = RedisStore.from_url(
        REDIS_URL, prefix=hub.prefix, endpoints={"inxmail": EndpointPolicy(concurrency=1)}
    )
    claimed = await hub.store.claim(hub.clock.now(), 30, 10)
    assert len(claimed) == 1
    assert await elsewhere.claim(hub.clock.now(), 30, 10) == []
    await elsewhere.close()
    [state] = await hub.store.destination_states(["inxmail"])
    assert state.in_flight == 1
    await hub.store.release(claimed[0], hub.clock.now())
    [state] = await hub.store.destination_states(["inxmail"])
    assert state.in_flight == 0


async def test_dead_letters_are_listed_and_replayed_once(start_hub) -> None:
    hub = await start_hub(routes=ONE_MESSAGE)
    hub.sink.default = 503
    await hub.accept(CREATED)
    for _ in range(4):
        await hub.worker.drain()
        hub.clock.advance(3600)
    [dead] = await hub.store.dead_letters()

    service = service_of(hub)
    out = io.StringIO()
    await dlq_list(service, out, destination="inxmail", since=None, limit=10, as_json=False)
    assert dead.id in out.getvalue() and "3 attempts" in out.getvalue()
    with pytest.raises(BadRequest, match="no destination named 'elsewhere'"):
        await dlq_list(service, out, destination="elsewhere", since=None, limit=10, as_json=False)

    hub.sink.default = 202
    out = io.StringIO()
    assert await replay(service, out, [dead.id], destination=None, since=None, resend=False) == 0
    assert await replay(service, out, [dead.id], destination=None, since=None, resend=False) == 1
    assert out.getvalue().splitlines() == [
        f"{dead.id}: due again",
        f"{dead.id}: not a dead letter (job {dead.id} is due, not a dead letter)",
    ]
    assert await hub.worker.drain() == 1
    job = await hub.store.get_job(dead.id)
    assert job.state == "done"
    assert [a["outcome"] for a in job.attempts] == ["retry", "retry", "dead", "replayed", "done"]
    assert len({r.json()["transactionId"] for r in hub.sink.requests}) == 1


async def test_bulk_replay_by_destination_and_time(start_hub) -> None:
    hub = await start_hub(routes=ONE_MESSAGE)
    hub.sink.default = 404
    await accept(hub, other_booking(CREATED, 1))
    await hub.worker.drain()
    hub.clock.advance(3600)
    await accept(hub, other_booking(CREATED, 2))
    await hub.worker.drain()
    assert len(await hub.store.dead_letters()) == 2

    hub.sink.default = 202
    out = io.StringIO()
    since = hub.clock.now() - 60  # only the one given up in the last minute
    code = await replay(service_of(hub), out, [], destination="inxmail", since=since, resend=False)
    assert code == 0
    await hub.worker.drain()
    assert hub.sink.requests[-1].json()["payload"]["customer"]["email"] == "client2@example.org"
    [left] = await hub.store.dead_letters()
    assert left.payload["event"]["booking"]["client"]["email"] == "client1@example.org"


async def test_replaying_an_event_routes_it_to_routes_it_missed(start_hub, sink) -> None:
    hub = await start_hub(routes=ONE_MESSAGE)
    event_id = await hub.accept(CREATED)
    await hub.worker.drain()
    assert [e for e, _ in sent(hub)] == ["inform-customer"]

    # hub.yaml gains a route; the same store, a new process
    grown = [
        *ONE_MESSAGE,
        {
            "name": "partner",
            "on": ["booking_confirmed"],
            "send": [{"to": "inxmail", "event": "calenso.booking.inform-partner"}],
        },
    ]
    later = await start_hub(routes=grown)
    out = io.StringIO()
    service = service_of(later)
    assert await replay(service, out, [event_id], destination=None, since=None, resend=False) == 0
    await replay(service, out, [event_id], destination=None, since=None, resend=False)
    first, second = out.getvalue().splitlines()
    assert "routed again (routes it has not been sent to)" in first
    assert "a replay is pending already" in second  # one replay request, one job
    await later.worker.drain()
    assert [e for e, _ in sent(hub)] == ["inform-customer", "inform-partner"]

    await replay(service, out, [event_id], destination=None, since=None, resend=True)
    await later.worker.drain()
    assert sorted(e for e, _ in sent(hub)[2:]) == ["inform-customer", "inform-partner"]


async def test_personal_data_is_encrypted_at_rest_and_keys_rotate(start_hub) -> None:
    old, new = new_key(), new_key()
    hub = await start_hub(store__encryption_keys=[old])
    hub.sink.default = 503
    await hub.accept(CREATED)
    await hub.worker.drain()  # the dispatch; deliveries wait for a retry

    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        dump = b""
        async for key in client.scan_iter(f"{hub.prefix}:*"):
            kind = await client.type(key)
            if kind == b"hash":
                dump += b"".join(v for v in (await client.hgetall(key)).values())
            elif kind == b"list":
                dump += b"".join(await client.lrange(key, 0, -1))
            elif kind == b"string":
                dump += await client.get(key)
        # strings with characters outside base64, so an encrypted token cannot hold them
        assert (
            b"Mara Keller" not in dump and b"mara.keller" not in dump and b"example.org" not in dump
        )
        assert len(dump) > 1000  # the encrypted event and jobs are there
    finally:
        await client.aclose()

    # a new key first, the old one still decrypts what it wrote
    rotated = await start_hub(store__encryption_keys=[new, old])
    hub.sink.default = 202
    rotated.clock.advance(3600)
    await rotated.worker.drain()
    assert {r.json()["payload"]["customer"]["email"] for r in hub.sink.requests[-2:]} == {
        "mara.keller@example.org"
    }


async def test_stopping_a_worker_releases_what_cannot_finish(start_hub) -> None:
    hub = await start_hub(worker__shutdown_grace="0s", routes=ONE_MESSAGE)
    hub.sink.hang = 1
    await hub.accept(CREATED)
    assert await hub.dispatch() == 1  # the delivery hangs below
    task = asyncio.create_task(hub.worker.run())
    [held] = await hub.sink.wait_for(1)
    hub.worker.stop()
    await asyncio.wait_for(task, 10)
    job = await hub.store.get_job(held.json()["transactionId"])
    assert (job.state, job.attempts) == ("due", [])
    [state] = await hub.store.destination_states(["inxmail"])
    assert state.in_flight == 0


async def test_a_stopping_worker_takes_no_job_over_and_leaves_it_due(start_hub) -> None:
    hub = await start_hub()  # two messages per booking, the second behind the first
    event_id = await hub.accept(CREATED)
    assert await hub.dispatch() == 1

    def stop_at_first(received: Any) -> None:
        hub.worker.stop()  # while the first message is being answered

    hub.sink.respond = stop_at_first
    await asyncio.wait_for(hub.worker.run(), 10)
    assert len(hub.sink.requests) == 1
    jobs = await hub.store.event_jobs(event_id)
    assert sorted((j.kind, j.state, len(j.attempts)) for j in jobs) == [
        ("deliver", "done", 1),
        ("deliver", "due", 0),
        ("dispatch", "done", 1),
    ]


async def test_replaying_a_dead_dispatch_after_its_event_was_routed_again_sends_nothing_twice(
    start_hub,
) -> None:
    hub = await start_hub(routes=ONE_MESSAGE)
    event_id = await hub.accept(CREATED)
    [dispatch] = await hub.store.claim(hub.clock.now(), 30, 10)
    await hub.store.bury(dispatch, Attempt(1, hub.clock.now(), 1.0, "dead"), hub.clock.now(), "x")
    out = io.StringIO()
    service = service_of(hub)
    await replay(service, out, [event_id], destination=None, since=None, resend=False)
    await hub.worker.drain()
    assert len(hub.sink.requests) == 1
    await replay(service, out, [dispatch.id], destination=None, since=None, resend=False)
    assert await hub.worker.drain() == 1  # the dispatch runs, and finds it all sent
    assert len(hub.sink.requests) == 1


async def test_a_stored_event_that_does_not_parse_is_a_dead_letter_at_once(start_hub) -> None:
    """Deliveries read the event as it was stored; one that is no event cannot succeed
    later, so it is not retried."""
    hub = await start_hub()
    now = hub.clock.now()
    broken = {"id": "evt_x.0", "type": "booking_confirmed", "booking": {"id": ["not", "one"]}}
    await hub.store.enqueue(
        [
            NewJob(
                id="job_broken",
                kind="deliver",
                payload={
                    "route": "all",
                    "event": broken,
                    "message": {"event": "calenso.booking.inform-customer"},
                },
                due=now,
                destination="inxmail",
                event_id="evt_x",
            )
        ],
        now,
    )
    assert await hub.worker.drain() == 1
    [dead] = await hub.store.dead_letters()
    assert dead.id == "job_broken" and len(dead.attempts) == 1
    assert dead.reason.startswith("stored event does not parse")
    assert hub.sink.requests == []


async def test_a_running_hub_hands_its_jobs_over_instead_of_claiming_them(
    aiohttp_client, redis_prefix, sink, clock
) -> None:
    """With the worker running in the app, a webhook's dispatch job comes back claimed from
    its accept, its first delivery from the dispatch's completion, the second from the
    first's (they share an ordering key): claims find none of them."""
    config = make_config(redis_prefix, sink.url, worker__concurrency=16)  # room for them all
    app = create_app(config, clock=clock, run_worker=True)
    client = await aiohttp_client(app)
    store, worker = app[STORE], app[WORKER]
    claimed: list[Job] = []
    claim = store.claim

    async def observed(*args: Any) -> list[Job]:
        jobs = await claim(*args)
        claimed.extend(jobs)
        return jobs

    store.claim = observed
    hub = Harness(client, worker, store, clock, redis_prefix, sink)
    ids = []
    for n in range(3):
        response = await hub.post_calendly(booking_body(n))
        assert response.status == 202
        ids.append((await response.json())["id"])
    await sink.wait_for(6)
    await worker.settled()
    assert claimed == []
    for event_id in ids:
        jobs = await store.event_jobs(event_id)
        assert sorted((j.kind, j.state, len(j.attempts)) for j in jobs) == [
            ("deliver", "done", 1),
            ("deliver", "done", 1),
            ("dispatch", "done", 1),
        ]


async def test_a_completing_job_holds_its_own_slot_only(start_hub) -> None:
    """While a job's outcome is being recorded, the slot it runs in is the one promised to
    what the store hands back; the other slots stay free for claims."""
    hub = await start_hub(worker__concurrency=4)
    free: list[tuple[str, int]] = []
    complete = hub.store.complete

    async def observed(job: Job, *args: Any, **kwargs: Any) -> Any:
        free.append((job.kind, hub.worker._free()))
        return await complete(job, *args, **kwargs)

    hub.store.complete = observed
    await hub.accept(CREATED)
    # the dispatch, then its two messages one after the other (one ordering key)
    assert await hub.worker.drain() == 3
    # the dispatch sets aside two more slots for its messages; a message none
    assert free == [("dispatch", 1), ("deliver", 3), ("deliver", 3)]


async def test_a_destination_that_does_not_answer_in_time_is_retried_and_the_next_runs(
    start_hub,
) -> None:
    hub = await start_hub(destinations__inxmail__timeout="100ms", worker__concurrency=4)
    hub.sink.hang = 1  # the first request gets no answer
    event_id = await hub.accept(CREATED)
    other_id = await accept(hub, other_booking(CREATED, 1))
    # 2 dispatches, the held message, the other booking's 2: the held one's next waits
    assert await hub.worker.drain() == 5
    jobs = [j for e in (event_id, other_id) for j in await hub.store.event_jobs(e)]
    retried = [j for j in jobs if j.attempts and j.attempts[0]["outcome"] == "retry"]
    assert [(j.state, j.attempts[0]["error"]) for j in retried] == [
        ("retry", "no answer within 0.1 s")
    ]
    # the held message's booking waits behind it; the other booking's two went out
    held = retried[0].event_id
    states = sorted((j.event_id == held, j.kind, j.state) for j in jobs)
    assert states == [
        (False, "deliver", "done"),
        (False, "deliver", "done"),
        (False, "dispatch", "done"),
        (True, "deliver", "blocked"),
        (True, "deliver", "retry"),
        (True, "dispatch", "done"),
    ]
    [state] = await hub.store.destination_states(["inxmail"])
    assert state.in_flight == 0


async def _logged_booking(hub: Harness, jobs: int) -> tuple[str, list[dict[str, Any]]]:
    """Accept the fixture booking and run its jobs: its event id and every log line."""
    import structlog
    from structlog.testing import capture_logs

    structlog.reset_defaults()
    with capture_logs() as logs:
        event_id = await hub.accept(CREATED)
        assert await hub.worker.drain() == jobs
    return event_id, logs


@pytest.mark.parametrize("failure", ["crash", "retryable", "permanent"])
async def test_a_failures_own_words_stay_out_of_the_logs_and_in_the_job(start_hub, failure) -> None:
    from hub.errors import PermanentDelivery, RetryableDelivery

    hub = await start_hub(routes=ONE_MESSAGE)
    words = "550 <refused.person@example.net>: no such user (token tk_live_0123456789abcdef)"

    async def deliver(delivery: Any) -> Any:
        if failure == "crash":
            raise RuntimeError(words)
        if failure == "retryable":
            raise RetryableDelivery(words, status=503)
        raise PermanentDelivery(words, status=422)

    hub.worker.destinations["inxmail"].deliver = deliver  # type: ignore[method-assign]
    event_id, logs = await _logged_booking(hub, 2)
    written = json.dumps(logs, default=str)
    assert "refused.person" not in written and "tk_live" not in written
    outcome = "job.dead" if failure == "permanent" else "job.retry"
    [line] = [entry for entry in logs if entry["event"] == outcome]
    kinds = {"crash": "RuntimeError", "retryable": "RetryableDelivery"}
    assert line["error_type"] == kinds.get(failure, "PermanentDelivery")
    assert line["status"] == {"crash": None, "retryable": 503, "permanent": 422}[failure]
    assert line["job_id"].startswith("job_") and line["destination"] == "inxmail"
    if failure == "crash":
        [crash] = [entry for entry in logs if entry["event"] == "deliver.error"]
        assert crash["error_type"] == "RuntimeError" and "test_delivery.py" in crash["where"]
    # the words are kept where an operator looks a job up: its attempts (the admin API)
    [job] = [j for j in await hub.store.event_jobs(event_id) if j.kind == "deliver"]
    assert words in job.attempts[0]["error"]


@pytest.mark.parametrize("error", [RuntimeError, ValueError])
async def test_a_dispatch_failures_own_words_stay_out_of_the_logs(start_hub, error) -> None:
    hub = await start_hub()
    words = "invitee refused.person@example.net is not valid (input_value='+41 79 000 00 00')"

    def normalize(*args: Any, **kwargs: Any) -> Any:
        raise error(words)

    hub.worker.sources["calendly"].normalize = normalize  # type: ignore[method-assign]
    event_id, logs = await _logged_booking(hub, 1)
    written = json.dumps(logs, default=str)
    assert "refused.person" not in written and "+41 79" not in written
    outcome = "job.dead" if error is ValueError else "job.retry"  # cannot normalize: for good
    [line] = [entry for entry in logs if entry["event"] == outcome]
    assert line["error_type"] == error.__name__ and line["kind"] == "dispatch"
    [job] = await hub.store.event_jobs(event_id)
    assert words in job.attempts[0]["error"]
