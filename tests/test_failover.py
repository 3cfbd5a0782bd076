"""Failover: webhooks keep flowing while a primary is SIGKILLed, under Sentinel and Cluster.

Each run posts a confirmation and then a cancellation for every booking, like a provider
that retries on 503. The primary is killed between the two rounds; it comes back (as an
orchestrator would restart it) and rejoins as a replica. Then:

- every webhook answered 202 is delivered (``min_replicas: 1``: what was acknowledged is
  on a replica when the primary dies);
- duplicates stay within the documented bound (the deliveries in flight at the kill);
- each booking's confirmation reaches the destination before its cancellation;
- intake answered 503 only between the kill and the end of the election (a primary with a
  replica in sync again), and every 503 carries Retry-After.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter, defaultdict
from typing import Any

from hub.errors import StoreUnavailable
from hub.testing_redis import RedisCluster, SentinelGroup, synced, wait_until
from tests.conftest import fixture_json

BOOKINGS = 6
_URI = "https://api.calendly.com/scheduled_events/EV{n}/invitees/INV{n:03d}"
CONCURRENCY = 4


def _bodies(n: int) -> tuple[bytes, bytes]:
    """A booking's confirmation and its cancellation."""
    uri = _URI.format(n=n)
    bodies = []
    for name in ("invitee_created", "invitee_canceled"):
        webhook = fixture_json(f"calendly/{name}.json")
        webhook["payload"].update(uri=uri, email=f"client{n}@example.org")
        bodies.append(json.dumps(webhook).encode())
    return bodies[0], bodies[1]


class Provider:
    """Posts webhooks and retries each on 503 until it is accepted, noting every answer."""

    def __init__(self, hub: Any) -> None:
        self.hub = hub
        self.accepted: list[str] = []
        self.accepted_at: list[float] = []  # when each accepted webhook was sent
        self.refused: list[tuple[float, dict[str, str]]] = []  # (when sent, headers)

    async def post(self, body: bytes, within: float = 60) -> None:
        deadline = time.monotonic() + within
        while True:
            sent = time.monotonic()
            response = await self.hub.post_calendly(body)
            if response.status == 202:
                self.accepted.append((await response.json())["id"])
                self.accepted_at.append(sent)
                return
            assert response.status == 503, await response.text()
            self.refused.append((sent, dict(response.headers)))
            assert time.monotonic() < deadline, "intake refused webhooks for too long"
            # the provider's retry: a wait on the store coming back, bounded above
            await asyncio.sleep(0.1)


async def _scenario(hub: Any, kill: Any, *, refusals: bool) -> None:
    """``kill()`` kills a primary and returns ``recover()``, which waits until the store
    is whole again and returns when."""
    provider = Provider(hub)
    worker = asyncio.create_task(hub.worker.run())
    bodies = [_bodies(n) for n in range(BOOKINGS)]
    await asyncio.gather(*(provider.post(created) for created, _ in bodies))

    killed_at = time.monotonic()
    recover = await asyncio.to_thread(kill)
    recovery = asyncio.create_task(asyncio.to_thread(recover))
    await asyncio.gather(*(provider.post(cancelled) for _, cancelled in bodies))
    recovered_at = await recovery
    hub.worker.stop()
    await worker

    # Leases of jobs whose outcome was lost with the primary run out; retries come due.
    # A replica that resyncs once more (Sentinel reconfiguring it) may refuse a WAIT:
    # drain again, a bounded number of times, until a drain finds nothing to do.
    for _ in range(10):
        hub.clock.advance(120)
        try:
            if await hub.worker.drain() == 0:
                break
        except StoreUnavailable:
            continue

    assert len(provider.accepted) == 2 * BOOKINGS
    if refusals:  # the outage was seen: webhooks came while it lasted
        assert provider.refused
    # Refusals fall within the outage: from the kill until the store is whole again, as
    # the hub itself finds it (its first acceptance sent after the test saw the recovery;
    # the hub learns of it through its own next call, a moment after the test)
    back = min((t for t in provider.accepted_at if t >= recovered_at), default=recovered_at)
    for sent, headers in provider.refused:
        assert killed_at <= sent <= max(recovered_at, back)
        assert headers.get("Retry-After")

    requests = hub.sink.requests
    by_booking: dict[str, list[str]] = defaultdict(list)
    for request in requests:
        body = request.json()
        by_booking[body["payload"]["appointment"]["uuid"]].append(body["event"])
    assert len(by_booking) == BOOKINGS
    for events in by_booking.values():
        confirmations = [i for i, e in enumerate(events) if ".cancel." not in e]
        cancellations = [i for i, e in enumerate(events) if ".cancel." in e]
        assert len(set(events)) == 4  # two of each: every accepted webhook delivered
        assert max(confirmations) < min(cancellations)  # per-booking order
    unique = Counter((r.json()["transactionId"]) for r in requests)
    duplicates = len(requests) - len(unique)
    assert duplicates <= CONCURRENCY  # at most the deliveries in flight at the kill


def _config(url: str, **store: Any) -> dict[str, Any]:
    return {
        "store__url": url,
        "store__min_replicas": 1,
        "worker__concurrency": CONCURRENCY,
        **{f"store__{k}": v for k, v in store.items()},
    }


async def test_sentinel_failover_loses_no_accepted_webhook(start_hub) -> None:
    group = await asyncio.to_thread(SentinelGroup)
    try:
        hub = await start_hub(**_config(group.url))

        def kill() -> Any:
            old = group.primary()
            old.kill()

            def recover() -> float:
                new = group.wait_for_new_primary(old)
                # back as a replica of the new primary (an orchestrator restarting it from
                # the configuration Sentinel keeps): min_replicas 1 can be met again
                old.start("--replicaof", "127.0.0.1", str(new.port))
                wait_until(lambda: synced(new), 30, "the old primary rejoins")
                return time.monotonic()

            return recover

        await _scenario(hub, kill, refusals=True)
    finally:
        await asyncio.to_thread(group.stop)


async def test_cluster_failover_loses_no_accepted_webhook(start_hub) -> None:
    cluster = await asyncio.to_thread(RedisCluster)
    try:
        hub = await start_hub(**_config(cluster.url, partitions=6))

        def kill() -> Any:
            # the primary serving the first booking's partition
            key = hub.store.keys_of(_URI.format(n=0)).prefix
            old = cluster.primary_for(key)
            heir = cluster.replica_of(old)
            old.kill()

            def recover() -> float:
                cluster.wait_for_failover(old, heir)
                old.start()  # its nodes.conf makes it a replica of its successor
                wait_until(cluster.healthy, 30, "the old primary rejoins the cluster")
                return time.monotonic()

            return recover

        # The cluster client retries through the failover of one shard: webhooks of its
        # partitions may get a slower 202 rather than a 503.
        await _scenario(hub, kill, refusals=False)
    finally:
        await asyncio.to_thread(cluster.stop)


async def test_an_accept_no_replica_confirmed_is_refused_and_so_is_its_retry(start_hub) -> None:
    """One Redis without replicas, min_replicas 1: the webhook is stored but not confirmed,
    so the provider hears 503 and retries; the retry finds it stored, and is refused too
    until a replica has it (its answer waits on the same confirmation)."""
    hub = await start_hub(store__min_replicas=1, store__replica_timeout="10ms")
    created, _ = _bodies(0)
    for _ in range(2):
        response = await hub.post_calendly(created)
        assert response.status == 503
        assert response.headers["Retry-After"] == "5"
        assert (await response.json())["error"] == "store_unavailable"
