"""One round trip per batch on one Redis (``TurnBatch._round_trip``) and the connections
``client_for`` builds (commands packed by hiredis): each call's own reply or error, a
connection lost or timed out mid-batch, a script cache emptied, a Redis restarted.

The faults happen on a redis-server of the test's own, on a free port."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from hub.errors import StoreUnavailable
from hub.store import open_store
from hub.store.connect import _Connection, client_for
from hub.store.reads import Reads
from hub.store.redis import _Batch
from hub.testing_redis import RedisServer

# KEYS[1] is the call's first argument; ARGV[2] says what to do
SCRIPT = """
local count = redis.call('INCR', KEYS[1] .. ':runs')
if ARGV[2] == 'refuse' then return redis.error_reply('ERR refused') end
if ARGV[2] == 'wrongtype' then return redis.call('INCR', KEYS[1] .. ':hash') end
if ARGV[2] == 'slow' then
  local start = redis.call('TIME')
  repeat
    local now = redis.call('TIME')
  until (now[1] - start[1]) * 1000000 + (now[2] - start[2]) > 600000
end
return {ARGV[2], count}
"""


@pytest.fixture
def own_redis(tmp_path):
    server = RedisServer(tmp_path, "--enable-debug-command", "yes").start()
    yield server
    server.stop()


def url_of(server: RedisServer, query: str = "") -> str:
    return f"redis://127.0.0.1:{server.port}/0{query}"


async def blocked(admin) -> list[dict]:
    """The clients blocked in a BLPOP."""
    return [c for c in await admin.client_list() if c["cmd"] == "blpop"]


async def runs(client, key: str) -> int:
    return int(await client.get(f"{key}:runs") or 0)


def test_commands_are_packed_as_redis_py_packs_them() -> None:
    ours, theirs = _Connection(), Connection()
    commands = [
        ("GET", "k"),
        ("SCRIPT LOAD", "return 1"),
        (b"CLIENT SETINFO", b"LIB-NAME", "hub"),
        ("EVALSHA", "ab" * 20, 1, "p", "p", -5, 2.5, 1e-05, 2**70, b"\x00" * 7000, "é"),
        ("SET", "k", bytearray(b"bytes"), memoryview(b"view")),
        ("get\tsplit", "k"),
    ]
    for command in commands:
        assert b"".join(ours.pack_command(*command)) == b"".join(theirs.pack_command(*command))
    assert b"".join(ours.pack_commands(commands)) == b"".join(theirs.pack_commands(commands))
    for refused in [("SET", "k", True), ("SET", "k", None)]:
        with pytest.raises(DataError):
            ours.pack_command(*refused)


def test_client_for_builds_lean_connections_where_text_is_utf8() -> None:
    for url in (
        "redis://h:1/0",
        "rediss://h:1/0",
        "unix:///run/redis.sock",
        "redis+sentinel://h:1/m",
    ):
        assert client_for(url).connection_pool.connection_class.__name__.startswith("_")
    assert client_for("redis://h:1/0?encoding=latin-1").connection_pool.connection_class is (
        Connection
    )


async def test_an_error_reply_reaches_only_its_caller(redis_prefix) -> None:
    client = client_for("redis://127.0.0.1:6379/0")
    await client.hset(f"{redis_prefix}:hash", "a", 1)
    batch = _Batch(client, client.register_script(SCRIPT))
    outcomes = await asyncio.gather(
        batch([redis_prefix, "first"]),
        batch([redis_prefix, "refuse"]),
        batch([redis_prefix, "wrongtype"]),
        batch([redis_prefix, "last"]),
        return_exceptions=True,
    )
    assert outcomes[0][0] == b"first" and outcomes[3][0] == b"last"
    assert isinstance(outcomes[1], ResponseError) and "refused" in str(outcomes[1])
    assert isinstance(outcomes[2], ResponseError) and "WRONGTYPE" in str(outcomes[2])
    assert await runs(client, redis_prefix) == 4  # once each, the script loaded once
    await batch.close()
    await client.aclose()


async def test_an_emptied_script_cache_costs_nothing_but_a_load(own_redis) -> None:
    client = client_for(url_of(own_redis))
    batch = _Batch(client, client.register_script(SCRIPT))
    assert (await batch(["k", "one"]))[0] == b"one"  # its first call loads it
    await client.script_flush()
    replies = await asyncio.gather(*(batch(["k", f"call{n}"]) for n in range(3)))
    assert [r[0] for r in replies] == [b"call0", b"call1", b"call2"]
    assert await runs(client, "k") == 4  # no call ran twice
    await batch.close()
    await client.aclose()


async def test_a_connection_killed_mid_batch_fails_its_callers_and_the_next_call_works(
    own_redis,
) -> None:
    store = open_store(url_of(own_redis), prefix="t", dedup_window=60, retention=60)
    admin = aioredis.Redis(port=own_redis.port)
    pop = asyncio.ensure_future(store._call(store._reads("BLPOP", "t:nothing", 10)))
    other = asyncio.ensure_future(store.get_event("evt_1"))  # the same batch, behind it
    async with asyncio.timeout(5):
        while not (waiting := await blocked(admin)):  # noqa: ASYNC110 (Redis says when)
            await asyncio.sleep(0.01)
    await admin.client_kill_filter(_id=waiting[0]["id"])
    for call in (pop, other):
        with pytest.raises(StoreUnavailable):
            await call
    await admin.hset("t:event:evt_1", mapping={"source": "s", "received_at": 1000, "body": b"{}"})
    assert (await store.get_event("evt_1")).body == b"{}"
    await store.close()
    await admin.aclose()


async def test_a_redis_killed_mid_batch_fails_its_callers_and_after_its_restart_all_works(
    own_redis,
) -> None:
    client = client_for(url_of(own_redis))
    batch = _Batch(client, client.register_script(SCRIPT))
    await batch(["k", "warm"])  # loaded, a connection in the pool
    admin = aioredis.Redis(port=own_redis.port)
    asleep = asyncio.ensure_future(admin.execute_command("DEBUG", "SLEEP", "2"))
    await asyncio.sleep(0.2)  # the server sleeps: what is sent now waits for a reply
    calls = [asyncio.ensure_future(batch(["k", f"call{n}"])) for n in range(3)]
    await asyncio.sleep(0.2)
    await asyncio.to_thread(own_redis.kill)
    for call in calls:
        with pytest.raises((RedisConnectionError, RedisTimeoutError)):
            await call
    with pytest.raises(RedisConnectionError):
        await asleep
    await asyncio.to_thread(own_redis.start)  # empty: no data, no scripts
    replies = await asyncio.gather(*(batch(["k", f"again{n}"]) for n in range(3)))
    assert [r[0] for r in replies] == [b"again0", b"again1", b"again2"]
    assert await runs(client, "k") == 3
    await batch.close()
    await client.aclose()
    await admin.aclose()


async def test_a_timed_out_script_batch_is_not_sent_again_and_leaves_no_reply_behind(
    own_redis,
) -> None:
    # a URL that asks redis-py to retry on timeouts: a script still runs once
    client = client_for(url_of(own_redis, "?socket_timeout=0.3&retry_on_timeout=yes"))
    batch = _Batch(client, client.register_script(SCRIPT))
    await batch(["k", "warm"])
    with pytest.raises(RedisTimeoutError):
        await batch(["slow", "slow"])
    assert await batch(["k", "next"]) == [b"next", 2]  # its own reply, not the slow one's
    await asyncio.sleep(1)  # a copy sent again would have run by now
    assert await runs(client, "slow") == 1
    await batch.close()
    await client.aclose()


async def test_a_timed_out_read_leaves_no_reply_behind(own_redis) -> None:
    client = client_for(url_of(own_redis, "?socket_timeout=0.3"))
    await client.set("ref", "uid-1")
    reads = Reads(client)
    with pytest.raises(RedisTimeoutError):
        await reads("BLPOP", "nothing", 1)
    assert await reads("GET", "ref") == b"uid-1"  # not the BLPOP's late nil
    await reads.close()
    await client.aclose()


async def test_a_connection_idle_past_its_health_check_interval_is_pinged_first(own_redis) -> None:
    client = client_for(url_of(own_redis, "?health_check_interval=1"))
    reads = Reads(client)
    assert await reads("GET", "ref") is None

    async def pings() -> int:
        stats = await admin.info("commandstats")
        return stats.get("cmdstat_ping", {}).get("calls", 0)

    admin = aioredis.Redis(port=own_redis.port)
    before = await pings()
    assert await reads("GET", "ref") is None  # within the interval: no PING
    assert await pings() == before
    await asyncio.sleep(1.1)
    assert await reads("GET", "ref") is None
    assert await pings() == before + 1
    await reads.close()
    await client.aclose()
    await admin.aclose()
