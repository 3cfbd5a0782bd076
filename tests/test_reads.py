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
