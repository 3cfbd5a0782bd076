"""The Store contract, on every shape of Redis the hub runs on.

    plain         one Redis (the shared test server), the key layout of one partition
    partitioned   the same Redis, four hash-tagged partitions and gates in their own slots
    sentinel      a 1-primary, 1-replica, 3-sentinel group of local servers, min_replicas 1
    cluster       a 3-primary Cluster with a replica each, four partitions, min_replicas 1
    embedded      the server the hub runs itself on a unix socket (``store: embedded``)

Each test gets a throwaway prefix; the Sentinel group, the Cluster and the embedded server
start once a session (hub/testing_redis.py, hub/store/embedded.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

from hub.errors import StoreError, StoreUnavailable
from hub.ids import new_id
from hub.store import Attempt, EndpointPolicy, Handoff, NewJob, open_store
from hub.store.embedded import EmbeddedServer
from hub.store.partitions import scope
from hub.testing_redis import RedisCluster, SentinelGroup, counting_writes
from tests.conftest import REDIS_URL

NOW = 1_800_000_000.0
SHAPES = ["plain", "partitioned", "sentinel", "cluster", "embedded"]


@pytest.fixture(scope="session")
def sentinel_group():
    with SentinelGroup() as group:
        yield group


@pytest.fixture(scope="session")
def redis_cluster():
    with RedisCluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def embedded_store():
    """The store the hub runs itself (``store: embedded``), in a short temporary path."""
    parent = Path(tempfile.mkdtemp(prefix="hub-"))
    with EmbeddedServer(parent / "store") as server:
        yield server.url
    shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture(params=SHAPES)
def make_store(request, redis_prefix):
    """``make_store(**options)``: a store of the shape under test (the test closes it)."""
    shape = request.param
    url, partitions, replicas = REDIS_URL, 1, 0
    if shape == "partitioned":
        partitions = 4
    elif shape == "sentinel":
        url, replicas = request.getfixturevalue("sentinel_group").url, 1
    elif shape == "cluster":
        url, partitions, replicas = request.getfixturevalue("redis_cluster").url, 4, 1
    elif shape == "embedded":
        url = request.getfixturevalue("embedded_store")
    prefix = redis_prefix if url == REDIS_URL else f"hubtest:{uuid.uuid4().hex[:12]}"

    def make(**options):
        options = {"dedup_window": 3600, "retention": 60, **options}
        return open_store(
            url, prefix=prefix, partitions=partitions, min_replicas=replicas, **options
        )

    make.shape = shape
    return make


@pytest.fixture
async def store(make_store):
    store = make_store()
    yield store
    await store.close()


async def accept(store, key: str = "k1", body: bytes = b"{}", now: float = NOW):
    return await store.accept("calendly", key, body, now, new_id("evt", now), new_id("job", now))


def attempt(job, outcome: str = "done") -> Attempt:
    return Attempt(job.attempt, NOW, 1.0, outcome)


async def test_accept_stores_the_event_and_a_due_dispatch_job(store) -> None:
    accepted = await accept(store, body=b'{"a": 1}')
    assert not accepted.duplicate
    event = await store.get_event(accepted.id)
    assert (event.source, event.body, event.received_at) == ("calendly", b'{"a": 1}', NOW)
    [job] = await store.claim(NOW, 30, 10)
    assert (job.kind, job.payload, job.event_id, job.attempt) == (
        "dispatch",
        {"event_id": accepted.id},
        accepted.id,
        1,
    )


async def test_accept_deduplicates_on_source_and_key(store) -> None:
    first = await accept(store, "same")
    again = await accept(store, "same")
    other = await accept(store, "different")
    assert again.id == first.id and again.duplicate
    assert other.id != first.id and not other.duplicate
    assert len(await store.claim(NOW, 30, 10)) == 2


async def test_a_claimed_job_is_leased_and_comes_back_when_the_lease_expires(store) -> None:
    await accept(store)
    [job] = await store.claim(NOW, 30, 10)
    assert await store.claim(NOW + 29, 30, 10) == []
    [again] = await store.claim(NOW + 31, 30, 10)
    assert again.id == job.id
    assert again.attempt == 2
    assert again.lease != job.lease
    # the worker that lost its lease cannot complete the job; the new holder can
    assert not await store.complete(job, attempt(job), NOW + 32)
    assert await store.complete(again, attempt(again), NOW + 32)
    assert (await store.get_job(job.id)).state == "done"


async def test_complete_spawns_jobs_atomically(store) -> None:
    await accept(store)
    [job] = await store.claim(NOW, 30, 10)
    spawned = NewJob(new_id("job"), "deliver", {"m": 1}, NOW + 5, "inxmail", job.event_id)
    assert await store.complete(job, attempt(job), NOW, [spawned])
    assert await store.claim(NOW + 4, 30, 10) == []
    [child] = await store.claim(NOW + 5, 30, 10)
    assert (child.id, child.kind, child.payload, child.destination) == (
        spawned.id,
        "deliver",
        {"m": 1},
        "inxmail",
    )


async def test_accept_hands_its_dispatch_job_over_claimed(store) -> None:
    now = NOW
    accepted = await store.accept(
        "calendly", "k1", b"{}", now, new_id("evt", now), new_id("job", now),
        handoff=Handoff(1, 30),
    )  # fmt: skip
    job = accepted.job
    assert (job.kind, job.payload, job.event_id, job.attempt) == (
        "dispatch",
        {"event_id": accepted.id},
        accepted.id,
        1,
    )
    assert (await store.get_job(job.id)).state == "running"
    assert await store.claim(NOW, 30, 10) == []  # claimed already
    # leased like any claim: its worker gone, it comes back when the lease runs out
    [again] = await store.claim(NOW + 31, 30, 10)
    assert (again.id, again.attempt) == (job.id, 2)
    assert not await store.complete(job, attempt(job), NOW + 32)
    assert await store.complete(again, attempt(again), NOW + 32)


async def test_accept_hands_nothing_over_without_room_or_for_a_duplicate(store) -> None:
    def args(key: str) -> tuple:
        return ("calendly", key, b"{}", NOW, new_id("evt", NOW), new_id("job", NOW))

    assert (await store.accept(*args("k1"))).job is None
    assert (await store.accept(*args("k2"), handoff=Handoff(0, 30))).job is None
    duplicate = await store.accept(*args("k1"), handoff=Handoff(1, 30))
    assert duplicate.duplicate and duplicate.job is None
    assert len(await store.claim(NOW, 30, 10)) == 2


async def test_a_hand_over_never_jumps_ahead_of_a_job_due_before_it(store) -> None:
    def args(key: str, now: float) -> tuple:
        return ("calendly", key, b"{}", now, new_id("evt", now), new_id("job", now))

    older = await store.accept(*args("k1", NOW), partition_key="one-booking")
    later = await store.accept(
        *args("k2", NOW + 1), partition_key="one-booking", handoff=Handoff(1, 30)
    )
    assert later.job is None  # the older one waits: a claim takes it first
    claimed = await store.claim(NOW + 1, 30, 10)
    assert [j.event_id for j in claimed] == [older.id, later.id]


async def test_complete_hands_over_what_it_makes_due_now(store) -> None:
    await accept(store)
    [job] = await store.claim(NOW, 30, 10)
    first = NewJob("job_h1", "deliver", {"m": 1}, NOW, "inxmail", job.event_id, "inxmail|b1")
    behind = NewJob("job_h2", "deliver", {"m": 2}, NOW, "inxmail", job.event_id, "inxmail|b1")
    later = NewJob("job_h3", "deliver", {"m": 3}, NOW + 60, "inxmail", job.event_id, "inxmail|b3")
    recorded = await store.complete(
        job, attempt(job), NOW, [first, behind, later], handoff=Handoff(3, 30)
    )
    # the second waits behind the first (its ordering key), the third is not due yet
    assert [(j.id, j.payload, j.attempt) for j in recorded.jobs] == [("job_h1", {"m": 1}, 1)]
    assert recorded.left == 0
    [handed] = recorded.jobs
    assert (await store.get_job("job_h2")).state == "blocked"
    # its completion lets the next of its key run, and hands that one over too
    recorded = await store.complete(handed, attempt(handed), NOW + 1, handoff=Handoff(1, 300))
    assert [j.id for j in recorded.jobs] == ["job_h2"]
    assert await store.claim(NOW + 1, 30, 10) == []
    assert [j.id for j in await store.claim(NOW + 60, 30, 10)] == ["job_h3"]


async def test_complete_hands_over_no_more_than_the_room_given(store) -> None:
    await accept(store)
    [job] = await store.claim(NOW, 30, 10)
    spawn = [
        NewJob(f"job_r{n}", "deliver", {}, NOW, "inxmail", job.event_id, f"inxmail|r{n}")
        for n in range(3)
    ]
    recorded = await store.complete(job, attempt(job), NOW, spawn, handoff=Handoff(2, 30))
    assert (len(recorded.jobs), recorded.left) == (2, 1)  # the third is left for a claim
    rest = await store.claim(NOW, 30, 10)
    assert {j.id for j in recorded.jobs + tuple(rest)} == {j.id for j in spawn}


async def test_a_hand_over_passes_the_destination_gates(make_store) -> None:
    store = make_store(endpoints={"api": EndpointPolicy(concurrency=1, circuit=False)})
    try:
        busy = NewJob("job_g0", "deliver", {}, NOW, "api", None, "api|b0")
        await store.enqueue([busy], NOW)
        [running] = await store.claim(NOW, 30, 10)
        await accept(store)
        [job] = await store.claim(NOW, 30, 10)
        waiting = NewJob("job_g1", "deliver", {}, NOW, "api", job.event_id, "api|b1")
        recorded = await store.complete(job, attempt(job), NOW, [waiting], handoff=Handoff(5, 30))
        assert recorded.jobs == ()  # api runs one at a time, and one runs
        assert await store.complete(running, attempt(running), NOW + 1)
        [later] = await store.claim(NOW + 2, 30, 10)
        assert later.id == "job_g1"
        [state] = await store.destination_states(["api"])
        assert state.in_flight == 1
    finally:
        await store.close()


async def test_retry_makes_the_job_due_later_and_keeps_its_attempts(store) -> None:
    await accept(store)
    [job] = await store.claim(NOW, 30, 10)
    assert await store.retry(job, Attempt(1, NOW, 2.5, "retry", 500, "boom"), NOW + 10)
    info = await store.get_job(job.id)
    assert (info.state, info.due_at) == ("retry", NOW + 10)
    assert info.attempts == [
        {
            "number": 1,
            "started_at": NOW,
            "duration_ms": 2.5,
            "outcome": "retry",
            "status": 500,
            "error": "boom",
        }
    ]
    assert await store.claim(NOW + 9, 30, 10) == []
    [again] = await store.claim(NOW + 10, 30, 10)
    assert again.attempt == 2


async def test_bury_keeps_the_job_as_a_dead_letter(store) -> None:
    await accept(store)
    [job] = await store.claim(NOW, 30, 10)
    assert await store.bury(job, attempt(job, "dead"), NOW, "gave up")
    assert [j.id for j in await store.dead_letters()] == [job.id]
    info = await store.get_job(job.id)
    assert (info.state, info.reason) == ("dead", "gave up")
    stats = await store.stats()
    assert (stats.due, stats.in_flight, stats.dead) == (0, 0, 1)


async def test_release_gives_the_job_back_without_counting_an_attempt(store) -> None:
    await accept(store)
    [job] = await store.claim(NOW, 30, 10)
    assert await store.release(job, NOW)
    [again] = await store.claim(NOW, 30, 10)
    assert again.attempt == 1
    assert (await store.get_job(job.id)).attempts == []


async def test_claim_takes_due_jobs_in_due_order_up_to_the_limit(store) -> None:
    for i in range(5):
        await accept(store, f"k{i}", now=NOW + i)
    assert await store.next_due() == NOW
    first = await store.claim(NOW + 10, 30, 3)
    second = await store.claim(NOW + 10, 30, 3)
    assert len(first) == 3 and len(second) == 2
    # due order holds within a partition (on one partition: all of them)
    for partition in {j.partition for j in first + second}:
        mine = [j for j in first + second if j.partition == partition]
        received = [(await store.get_event(j.event_id)).received_at for j in mine]
        assert received == sorted(received)


async def test_finished_jobs_and_events_expire_after_the_retention(store, redis_prefix) -> None:
    accepted = await accept(store)
    [job] = await store.claim(NOW, 30, 10)
    await store.complete(job, attempt(job), NOW)
    with scope(job.partition):
        ttl_job = await store.redis.ttl(store.keys.job(job.id))
        ttl_event = await store.redis.ttl(store.keys.event(accepted.id))
    assert 0 < ttl_job <= 60 and 0 < ttl_event <= 60


async def test_a_payload_that_cannot_be_read_is_a_dead_letter_not_a_stuck_claim(make_store):
    from hub.crypto import new_key

    writer = make_store(encryption_keys=[new_key()])
    reader = make_store(encryption_keys=[new_key()])
    try:
        await accept(writer, "lost key")
        await accept(reader, "readable", now=NOW + 1)
        [job] = await reader.claim(NOW + 2, 30, 10)  # one claim; the unreadable one is dead
        assert job.payload["event_id"]
        [dead] = await reader.dead_letters()
        assert dead.reason.startswith("stored payload cannot be read")
        assert await reader.claim(NOW + 3, 30, 10) == []  # not due again, ever
    finally:
        await writer.close()
        await reader.close()


async def test_a_saturated_destination_does_not_starve_the_others(make_store) -> None:
    from hub.store import EndpointPolicy

    store = make_store(endpoints={"a": EndpointPolicy(concurrency=1)})
    try:
        await accept(store)
        [dispatch] = await store.claim(NOW, 30, 10)
        spawn = [
            NewJob(f"job_a{n:04d}", "deliver", {}, NOW, "a", dispatch.event_id, f"a|{n}")
            for n in range(300)
        ]
        spawn.append(NewJob("job_b", "deliver", {}, NOW, "b", dispatch.event_id, "b|1"))
        await store.complete(dispatch, attempt(dispatch), NOW, spawn)
        claimed = []
        for _ in range(3):
            claimed += [job.id for job in await store.claim(NOW, 30, 16)]
        assert "job_b" in claimed
        assert sum(1 for job_id in claimed if job_id.startswith("job_a")) == 1
    finally:
        await store.close()


async def test_replay_restarts_the_age_of_a_job(store) -> None:
    await accept(store)
    [job] = await store.claim(NOW, 30, 10)
    await store.bury(job, attempt(job, "dead"), NOW, "gave up")
    assert await store.replay(job.id, NOW + 86400 * 3)
    assert (await store.get_job(job.id)).created_at == NOW + 86400 * 3


async def test_a_lost_lease_blocks_every_outcome(store) -> None:
    await accept(store)
    [job] = await store.claim(NOW, 30, 10)
    [again] = await store.claim(NOW + 31, 30, 10)
    assert not await store.retry(job, attempt(job, "retry"), NOW + 60)
    assert not await store.bury(job, attempt(job, "dead"), NOW + 32, "no")
    assert not await store.release(job, NOW + 32)
    assert (await store.get_job(job.id)).state == "running"
    assert await store.complete(again, attempt(again), NOW + 32)


def _timer(n: int) -> NewJob:
    return NewJob(f"job_timer{n}", "timer", {"timer": "pair"}, NOW + 600)


async def test_pairing_answers_each_half_once_and_again_the_same(store) -> None:
    cancelled, created = {"half": "cancelled"}, {"half": "created"}
    first = await store.pair("k", "cancelled", cancelled, False, _timer(1), NOW, half="c")
    assert first.status == "wait"
    assert (
        await store.pair("k", "cancelled", cancelled, False, _timer(2), NOW, half="c")
    ).status == "wait"
    second = await store.pair("k", "created", created, True, _timer(3), NOW, half="n")
    assert (second.status, second.partner) == ("paired", cancelled)
    again = await store.pair("k", "created", created, True, _timer(4), NOW, half="n")
    assert (again.status, again.partner) == ("paired", cancelled)  # a retried job
    assert (
        await store.pair("k", "cancelled", cancelled, False, _timer(5), NOW, half="x")
    ).status == "done"
    assert await store.pair_timeout("k", NOW + 600, "job_timer1") is None
    assert await store.scheduled("pair|k") is None  # the fallback timer was dropped


async def test_a_half_left_alone_goes_alone_once(store) -> None:
    cancelled = {"half": "cancelled"}
    await store.pair("k", "cancelled", cancelled, False, _timer(1), NOW, half="c")
    assert (await store.scheduled("pair|k")).due_at == NOW + 600
    assert await store.pair_timeout("k", NOW + 600, "job_timer1") == cancelled
    assert await store.pair_timeout("k", NOW + 600, "job_timer1") == cancelled  # retried
    assert await store.pair_timeout("k", NOW + 600, "job_other") is None
    late = await store.pair("k", "created", {"half": "created"}, True, _timer(2), NOW, half="n")
    assert (late.status, late.partner) == ("late", cancelled)  # it came after the window


async def test_a_half_that_may_go_alone_does_so_and_its_partner_is_dropped(store) -> None:
    alone = await store.pair("k", "created", {"x": 1}, True, _timer(1), NOW, half="n")
    assert alone.status == "alone"
    assert (
        await store.pair("k", "created", {"x": 1}, True, _timer(1), NOW, half="n")
    ).status == "alone"
    assert (
        await store.pair("k", "cancelled", {"x": 2}, False, _timer(2), NOW, half="c")
    ).status == "done"
    assert await store.scheduled("pair|k") is None


async def test_enqueue_puts_jobs_on_the_queue_behind_their_keys(store) -> None:
    jobs = [
        NewJob(f"job_e{n}", "deliver", {"n": n}, NOW, "d", None, "d|same" if n < 2 else f"d|{n}")
        for n in range(2500)
    ]
    assert await store.enqueue(jobs, NOW) == 2500
    claimed = await store.claim(NOW, 30, 5000)
    assert len(claimed) == 2499  # job_e1 waits behind job_e0, the same ordering key
    assert "job_e1" not in {j.id for j in claimed}
    assert (await store.get_job("job_e1")).state == "blocked"


async def test_a_concurrency_limit_holds_across_workers_and_partitions(make_store) -> None:
    """Four workers claim and finish 120 jobs of a destination limited to 3 at once, from
    every partition: never more than 3 run together, and all of them run."""
    import asyncio
    import random

    from hub.store import EndpointPolicy

    store = make_store(endpoints={"api": EndpointPolicy(concurrency=3, circuit=False)})
    rng = random.Random(7)
    jobs = [
        NewJob(f"job_l{n:04d}", "deliver", {"n": n}, NOW, "api", None, f"api|booking{n}")
        for n in range(120)
    ]
    await store.enqueue(jobs, NOW)
    running: set[str] = set()
    most, done = 0, []
    clock = [NOW]

    async def worker() -> None:
        nonlocal most
        idle = 0
        while idle < 3:
            claimed = await store.claim(clock[0], 30, 5)
            idle = 0 if claimed else idle + 1
            for job in claimed:
                running.add(job.id)
            most = max(most, len(running))
            for job in claimed:
                await asyncio.sleep(0) if rng.random() < 0.5 else None
                running.discard(job.id)
                assert await store.complete(job, attempt(job), clock[0])
                done.append(job.id)
            clock[0] += 0.2  # the jobs held back for the limit come due again

    try:
        await asyncio.gather(*(worker() for _ in range(4)))
        assert most <= 3
        assert sorted(done) == sorted(j.id for j in jobs)
        [state] = await store.destination_states(["api"])
        assert state.in_flight == 0
    finally:
        await store.close()


async def test_an_open_circuit_lets_one_probe_through_from_all_partitions(make_store) -> None:
    from hub.store import EndpointPolicy

    policy = EndpointPolicy(min_requests=2, failure_ratio=0.5, open_for=30)
    store = make_store(endpoints={"api": policy})
    try:
        jobs = [
            NewJob(f"job_c{n:03d}", "deliver", {}, NOW, "api", None, f"api|b{n}") for n in range(40)
        ]
        await store.enqueue(jobs, NOW)
        first = await store.claim(NOW, 30, 2)
        changed = [await store.retry(j, attempt(j, "retry"), NOW + 1, "fail") for j in first]
        assert changed[-1].circuit == "open"
        assert await store.claim(NOW + 10, 30, 50) == []  # open: nothing runs
        probes = await store.claim(NOW + 31, 30, 50)  # half open: one probe
        assert len(probes) == 1
        assert await store.claim(NOW + 31.5, 30, 50) == []
        recorded = await store.complete(probes[0], attempt(probes[0]), NOW + 32, health="ok")
        assert recorded.circuit == "closed"
        assert len(await store.claim(NOW + 40, 30, 50)) == 39  # closed: all the rest run
    finally:
        await store.close()


async def test_claims_share_the_limit_among_partitions_with_work(make_store) -> None:
    """A partition with a backlog does not starve one with a single job due later, and a
    claim with nothing due anywhere finds nothing."""
    from hub.store.partitions import partition_of

    if make_store.shape in ("plain", "sentinel", "embedded"):
        pytest.skip("one partition: due order decides")
    store = make_store()
    try:
        home = partition_of("d|0", 4)
        crowd = [k for k in (f"d|{n}" for n in range(400)) if partition_of(k, 4) == home][:60]
        other = next(k for k in (f"d|{n}" for n in range(400)) if partition_of(k, 4) != home)
        await store.enqueue(
            [NewJob(f"job_b{n:03d}", "deliver", {}, NOW, "d", None, k) for n, k in enumerate(crowd)]
            + [NewJob("job_other", "deliver", {}, NOW + 1, "d", None, other)],
            NOW,
        )
        assert await store.claim(NOW - 1, 30, 4) == []
        claimed = await store.claim(NOW + 1, 30, 2)
        assert {j.partition for j in claimed} == {home, partition_of(other, 4)}
        assert "job_other" in {j.id for j in claimed}
    finally:
        await store.close()


async def test_the_read_side_lists_and_counts_across_partitions(store) -> None:
    """Listings merge every partition newest first, page by page; records, an event's
    jobs and the counts come from wherever the jobs are."""
    from hub.store.views import EventFilter, JobFilter

    accepted = []
    for i in range(12):
        accepted.append((await accept(store, f"k{i}", now=NOW + i)).id)
    first = await store.events(EventFilter(), limit=5)
    rest = await store.events(EventFilter(), cursor=first.next_cursor, limit=50)
    assert [e.id for e in first.items + rest.items] == accepted[::-1]
    claimed = await store.claim(NOW + 20, 30, 12)
    assert len(claimed) == 12
    for job in claimed[:3]:
        await store.bury(job, attempt(job, "dead"), NOW + 21, "gave up")
    dead = await store.jobs(JobFilter(state="dead"))
    assert {j.id for j in dead.items} == {j.id for j in claimed[:3]}
    assert {j.id for j in await store.dead_letters()} == {j.id for j in claimed[:3]}
    assert [j.id for j in await store.event_jobs(claimed[0].event_id)] == [claimed[0].id]
    counts = await store.counts([], NOW + 22)
    assert counts.jobs[("dead", "dispatch")] == 3
    assert counts.jobs[("running", "dispatch")] == 9
    assert (await store.event_record(accepted[4])).source == "calendly"


async def test_one_wait_confirms_a_write_of_every_kind(sentinel_group) -> None:
    primary = sentinel_group.primary().client()

    def waits() -> int:
        return primary.info("commandstats").get("cmdstat_wait", {}).get("calls", 0)

    async def one_turn(store, key: str) -> list:
        writes = counting_writes(store.redis)
        outcomes = await asyncio.gather(
            accept(store, key),
            store.record_booking(f"uid-{key}", "evt_x", {}, True, [], NOW),
            store.booking_by_ref("nothing"),
            return_exceptions=True,
        )
        assert len(writes) == 1  # the three calls and one WAIT after them
        return outcomes

    options = {"prefix": f"hubtest:{uuid.uuid4().hex[:12]}", "dedup_window": 60, "retention": 60}
    confirmed = open_store(sentinel_group.url, min_replicas=1, **options)
    await accept(confirmed, "warm")  # its scripts loaded
    first = await confirmed.record_booking("uid-warm", "evt_x", {}, True, [], NOW)
    before = waits()
    accepted, booked, found = await one_turn(confirmed, "k1")
    assert not accepted.duplicate and booked == first and found is None
    assert waits() == before + 1
    # more replicas than there are: the scripts' callers hear it, the reader has its reply
    unconfirmed = open_store(sentinel_group.url, min_replicas=2, replica_timeout=0.1, **options)
    accepted, booked, found = await one_turn(unconfirmed, "k2")
    assert isinstance(accepted, StoreUnavailable) and "1 of 2 replicas" in str(accepted)
    assert isinstance(booked, StoreUnavailable)
    assert found is None
    await confirmed.close()
    await unconfirmed.close()
    primary.close()


async def test_completions_made_together_each_hear_their_own_outcome(store) -> None:
    """Completions of one turn go to Redis together (on one Redis, in one write), and each
    is recorded as it would be alone."""
    for i in range(4):
        await accept(store, f"k{i}")
    jobs = await store.claim(NOW, 30, 10)
    done, retried, buried, lost = jobs
    recorded = await asyncio.gather(
        store.complete(done, attempt(done), NOW + 1),
        store.retry(retried, attempt(retried, "retry"), NOW + 60),
        store.bury(buried, attempt(buried, "dead"), NOW + 2, "gave up"),
        store.complete(dataclasses.replace(lost, lease="not-its-lease"), attempt(lost), NOW + 3),
    )
    assert [r.kept for r in recorded] == [True, True, True, False]
    infos = [await store.get_job(job.id) for job in jobs]
    assert [info.state for info in infos] == ["done", "retry", "dead", "running"]
    assert infos[2].reason == "gave up"
    assert [j.id for j in await store.dead_letters()] == [buried.id]
    # the retried job is due again, and the lease the lost one still had ran out
    again = await store.claim(NOW + 60, 30, 10)
    assert sorted(j.id for j in again) == sorted([retried.id, lost.id])


async def test_an_error_in_one_completion_stops_that_one_only(redis_prefix) -> None:
    store = open_store(REDIS_URL, prefix=redis_prefix, dedup_window=3600, retention=60)
    for i in range(3):
        await accept(store, f"k{i}")
    first, broken, last = await store.claim(NOW, 30, 10)
    # a value no completion can read: releasing the job cannot count its attempts back
    await store.redis.hset(store.keys.job(broken.id), "attempts", "not a number")
    recorded = await asyncio.gather(
        store.complete(first, attempt(first), NOW),
        store.release(broken, NOW),
        store.complete(last, attempt(last), NOW),
        return_exceptions=True,
    )
    await store.close()
    assert isinstance(recorded[1], StoreError) and "arithmetic" in str(recorded[1])
    assert recorded[0].kept and recorded[2].kept
    store = open_store(REDIS_URL, prefix=redis_prefix, dedup_window=3600, retention=60)
    assert [(await store.get_job(j.id)).state for j in (first, last)] == ["done", "done"]
    await store.close()
