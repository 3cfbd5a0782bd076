"""Reads that share a round trip (``hub/store/reads.py``), against a real Redis."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from hub.store.reads import Reads
from hub.testing_redis import counting_writes
from tests.conftest import REDIS_URL


@pytest.fixture
async def client(redis_prefix):
    client = aioredis.Redis.from_url(REDIS_URL)
    p = redis_prefix
    await client.hset(f"{p}:event", mapping={"source": "calendly", "body": b"{}"})
    await client.sadd(f"{p}:sent", "a", "b")
    await client.set(f"{p}:ref", "uid-1")
    yield client
    await client.aclose()


async def test_reads_of_one_turn_share_one_write_and_get_their_own_replies(
    client, redis_prefix
) -> None:
    p = redis_prefix
    opened = counting_writes(client)
    reads = Reads(client)
    replies = await asyncio.gather(
        reads("HGETALL", f"{p}:event"),
        reads("SMEMBERS", f"{p}:sent"),
        reads("GET", f"{p}:ref"),
        reads("HMGET", f"{p}:event", "source", "missing"),
        reads("GET", f"{p}:nothing"),
        reads("HGETALL", f"{p}:nothing"),
    )
    assert replies == [
        {b"source": b"calendly", b"body": b"{}"},
        {b"a", b"b"},
        b"uid-1",
        [b"calendly", None],
        None,
        {},
    ]
    assert len(opened) == 1
    assert await reads("GET", f"{p}:ref") == b"uid-1"  # a later turn: a write of its own
    assert len(opened) == 2
    await reads.close()


async def test_an_error_reply_reaches_its_caller_only(client, redis_prefix) -> None:
    p = redis_prefix
    reads = Reads(client)
    wrong, right = await asyncio.gather(
        reads("HGETALL", f"{p}:ref"), reads("GET", f"{p}:ref"), return_exceptions=True
    )
    assert isinstance(wrong, ResponseError) and "WRONGTYPE" in str(wrong)
    assert right == b"uid-1"


async def test_a_cancelled_caller_leaves_the_others_their_replies(client, redis_prefix) -> None:
    p = redis_prefix
    reads = Reads(client)
    first = asyncio.ensure_future(reads("GET", f"{p}:ref"))
    second = asyncio.ensure_future(reads("SMEMBERS", f"{p}:sent"))
    await asyncio.sleep(0)  # both submitted
    first.cancel()
    assert await second == {b"a", b"b"}
    assert first.cancelled()


async def test_a_connection_failure_reaches_every_caller() -> None:
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    client = aioredis.Redis(port=port, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
    reads = Reads(client)
    outcomes = await asyncio.gather(reads("GET", "a"), reads("GET", "b"), return_exceptions=True)
    assert all(isinstance(o, RedisConnectionError) for o in outcomes)
    await client.aclose()


async def test_a_kept_connection_the_server_closed_is_not_written_to(redis_prefix) -> None:
    """The connection of one round trip is kept for the next; one that Redis closed in
    between (a restart, its idle timeout, CLIENT KILL) is left to the pool, which connects
    anew: the next call is answered, without a retry to hide a failed write."""
    client = aioredis.Redis.from_url(REDIS_URL, retry=Retry(NoBackoff(), 0))
    admin = aioredis.Redis.from_url(REDIS_URL)
    await client.set(f"{redis_prefix}:ref", "uid-1")
    reads = Reads(client)
    first = await reads("CLIENT ID")
    assert await reads("CLIENT ID") == first  # kept between round trips
    await admin.client_kill_filter(_id=first)
    kept = reads._sender._kept
    async with asyncio.timeout(5):  # until the closed socket reaches this process
        while not kept._reader.at_eof():  # noqa: ASYNC110 (the socket says when)
            await asyncio.sleep(0.01)
    assert await reads("GET", f"{redis_prefix}:ref") == b"uid-1"
    assert await reads("CLIENT ID") != first
    await reads.close()
    assert reads._sender._kept is None
    await client.aclose()
    await admin.aclose()


async def test_closing_gives_back_the_connection_of_a_round_trip_queued_behind_another(
    redis_prefix,
) -> None:
    """close() waits for the round trip out and for the one queued behind it, whose
    connection goes back to the pool, as does any taken after close."""
    client = aioredis.Redis.from_url(REDIS_URL)
    admin = aioredis.Redis.from_url(REDIS_URL)
    reads = Reads(client)
    await reads("PING")  # a connection kept
    blocked = asyncio.ensure_future(reads("BLPOP", f"{redis_prefix}:wake", 10))
    async with asyncio.timeout(5):  # until Redis holds the BLPOP
        while not any(c.get("cmd") == "blpop" for c in await admin.client_list()):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    queued = asyncio.ensure_future(reads("PING"))  # waits for the BLPOP's answer
    closing = asyncio.ensure_future(reads.close())
    await asyncio.sleep(0)  # close() is under way before the BLPOP answers
    await admin.lpush(f"{redis_prefix}:wake", "x")
    assert await blocked == (f"{redis_prefix}:wake".encode(), b"x")
    assert await queued is True
    await closing
    assert await reads("PING") is True  # after close: answered, the connection given back
    pool = client.connection_pool
    assert reads._sender._kept is None and not pool._in_use_connections
    await client.aclose()
    await admin.aclose()


async def _blocked_in_redis(admin: aioredis.Redis, count: int) -> None:
    """Until Redis holds ``count`` BLPOPs of a client."""
    async with asyncio.timeout(5):
        while sum(c.get("cmd") == "blpop" for c in await admin.client_list()) < count:  # noqa: ASYNC110
            await asyncio.sleep(0.01)


class _Heavy(Reads):
    """Reads that count toward a second write, as the store's FINISH calls do."""

    heavy = True


async def test_eight_calls_waiting_behind_a_write_go_as_a_second_and_no_third(
    redis_prefix,
) -> None:
    """A write out (a BLPOP Redis holds): the calls made meanwhile wait for it until eight
    that count wait, which go at once as a second write and are answered while the first
    is still out. With two out, the calls after them wait for one of the two to answer."""
    p = redis_prefix
    client = aioredis.Redis.from_url(REDIS_URL)
    admin = aioredis.Redis.from_url(REDIS_URL)
    reads = _Heavy(client)
    first = asyncio.ensure_future(reads("BLPOP", f"{p}:one", 10))
    await _blocked_in_redis(admin, 1)
    seven = [asyncio.ensure_future(reads("INCR", f"{p}:count")) for _ in range(7)]
    await _blocked_in_redis(admin, 1)  # turns of the loop, round trips of another client
    assert await admin.get(f"{p}:count") is None  # the seven wait: not sent
    eighth = asyncio.ensure_future(reads("INCR", f"{p}:count"))
    async with asyncio.timeout(5):  # answered while the BLPOP is still out
        assert sorted(await asyncio.gather(*seven, eighth)) == list(range(1, 9))
    assert not first.done()

    # two out: the first BLPOP, and a second with the seven calls behind it
    second = asyncio.ensure_future(reads("BLPOP", f"{p}:two", 10))
    behind = [asyncio.ensure_future(reads("INCR", f"{p}:count")) for _ in range(7)]
    await _blocked_in_redis(admin, 2)
    third = [asyncio.ensure_future(reads("INCR", f"{p}:count")) for _ in range(8)]
    await _blocked_in_redis(admin, 2)
    assert await admin.get(f"{p}:count") == b"8"  # nothing of a third write ran
    await admin.lpush(f"{p}:one", "x")  # the first answers: the eight go
    async with asyncio.timeout(5):
        assert await first == (f"{p}:one".encode(), b"x")
        assert sorted(await asyncio.gather(*third)) == list(range(9, 17))
    assert not second.done() and not any(call.done() for call in behind)
    await admin.lpush(f"{p}:two", "y")
    assert await second == (f"{p}:two".encode(), b"y")
    assert sorted(await asyncio.gather(*behind)) == list(range(17, 24))
    await reads.close()
    pool = client.connection_pool
    assert reads._sender._kept is None and not pool._in_use_connections
    await client.aclose()
    await admin.aclose()


@pytest.mark.parametrize(
    ("kind", "pool"),
    [(Reads, ""), (_Heavy, "?max_connections=2")],
    ids=["calls-that-do-not-count", "a-pool-of-a-few-connections"],
)
async def test_calls_behind_a_write_wait_for_it_however_many_they_are(
    redis_prefix, kind, pool
) -> None:
    """Calls that do not count toward a second write (other than completions) wait for the
    write out however many they are; so do all calls on a pool of a few connections, where
    a second write would take a second connection."""
    p = redis_prefix
    client = aioredis.Redis.from_url(REDIS_URL + pool)
    admin = aioredis.Redis.from_url(REDIS_URL)
    reads = kind(client)
    first = asyncio.ensure_future(reads("BLPOP", f"{p}:one", 10))
    await _blocked_in_redis(admin, 1)
    calls = [asyncio.ensure_future(reads("INCR", f"{p}:count")) for _ in range(12)]
    await _blocked_in_redis(admin, 1)
    assert await admin.get(f"{p}:count") is None
    await admin.lpush(f"{p}:one", "x")
    async with asyncio.timeout(5):
        assert await first == (f"{p}:one".encode(), b"x")
        assert sorted(await asyncio.gather(*calls)) == list(range(1, 13))
    await reads.close()
    await client.aclose()
    await admin.aclose()


async def test_a_pool_of_one_connection_is_not_kept_from_its_other_users(redis_prefix) -> None:
    client = aioredis.Redis.from_url(REDIS_URL + "?max_connections=1")
    reads = Reads(client)
    assert await reads("PING") is True
    assert await client.ping() is True  # the pool's one connection is free again
    assert await reads("PING") is True
    await reads.close()
    await client.aclose()
