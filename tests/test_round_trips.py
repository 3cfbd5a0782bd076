"""One write per turn on one Redis (``Sender``, shared by every kind of call) and the
connections ``client_for`` builds (commands packed by hiredis): each call's own reply or
error, a connection lost or timed out mid-batch, a script cache emptied, a Redis
restarted.

The faults happen on a redis-server of the test's own, on a free port."""

from __future__ import annotations

import asyncio
import gc

import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from hub.errors import StoreUnavailable
from hub.store import Attempt, Handoff, open_store
from hub.store.connect import _Connection, client_for
from hub.store.reads import Reads, sender_for
from hub.store.redis import _Batch
from hub.testing_redis import RedisServer, counting_writes

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


async def reads_processed(admin) -> int:
    """The reads Redis made from its clients' sockets, the INFO asking for it included."""
    return int((await admin.info("stats"))["total_reads_processed"])


async def test_calls_of_every_kind_made_in_one_turn_go_in_one_write(own_redis) -> None:
    store = open_store(url_of(own_redis), prefix="t", dedup_window=60, retention=60)
    admin = aioredis.Redis(port=own_redis.port)
    now = 1_800_000_000.0

    async def accept(n: int, room: int = 0):
        return await store.accept(
            "calendly", f"k{n}", b"{}", now, f"evt_{n}", f"job_{n}", handoff=Handoff(room, 30)
        )

    first = await accept(1, room=1)  # the scripts loaded, a connection in the pool
    first_booked = await store.record_booking("uid-1", first.id, {}, True, ["ref-1"], now)
    await store.complete((await accept(2, room=1)).job, Attempt(1, now, 0.1, "ok"), now)
    gc.collect()  # a client left by the server's start closes now, not while Redis counts
    async with asyncio.timeout(5):
        while len(await admin.client_list()) > 2:  # noqa: ASYNC110 (Redis says when)
            await asyncio.sleep(0.01)
    writes = counting_writes(store.redis)
    before = await reads_processed(admin)
    accepted, booked, completed, event, sent = await asyncio.gather(
        accept(3),
        store.record_booking("uid-3", "evt_3", {}, True, ["ref-3"], now),
        store.complete(first.job, Attempt(1, now, 0.1, "ok"), now),
        store.get_event(first.id),
        store.sent_signatures(first.id),
    )
    assert len(writes) == 1
    assert await reads_processed(admin) - before == 2  # the write, and the second INFO
    assert (accepted.id, accepted.duplicate) == ("evt_3", False)
    assert booked == first_booked  # a booking's first version, as uid-1's
    assert completed.kept
    assert (event.source, event.body) == ("calendly", b"{}")
    assert sent == set()
    await store.close()
    await admin.aclose()


async def test_a_script_redis_lost_is_loaded_and_only_its_calls_sent_again(own_redis) -> None:
    client = client_for(url_of(own_redis))
    sender = sender_for(client)
    known = _Batch(client, client.register_script(SCRIPT), None, sender)
    new = _Batch(client, client.register_script(SCRIPT + "-- another"), None, sender)
    reads = Reads(client, sender)
    await client.set("ref", "uid-1")
    await known(["known", "warm"])  # loaded; the other script is not
    admin = aioredis.Redis(port=own_redis.port)

    async def loads() -> int:
        return (await admin.info("commandstats"))["cmdstat_script|load"]["calls"]

    loaded = await loads()
    writes = counting_writes(client)
    replies = await asyncio.gather(
        known(["known", "one"]), new(["new", "one"]), reads("GET", "ref"), new(["new", "two"])
    )
    assert replies == [[b"one", 2], [b"one", 1], b"uid-1", [b"two", 2]]
    assert len(writes) == 2  # the write, then the script loaded and its two calls again
    assert (await runs(client, "known"), await runs(client, "new")) == (2, 2)
    assert await loads() == loaded + 1
    await known.close()
    await client.aclose()
    await admin.aclose()


async def test_in_a_write_of_every_kind_an_error_reply_reaches_only_its_caller(
    redis_prefix,
) -> None:
    p = redis_prefix
    client = client_for("redis://127.0.0.1:6379/0")
    await client.hset(f"{p}:hash", "a", 1)
    await client.set(f"{p}:ref", "uid-1")
    sender = sender_for(client)
    batch = _Batch(client, client.register_script(SCRIPT), None, sender)
    other = _Batch(client, client.register_script("return ARGV[2]"), None, sender)
    reads = Reads(client, sender)
    await asyncio.gather(batch([p, "warm"]), other([p, "warm"]))
    writes = counting_writes(client)
    outcomes = await asyncio.gather(
        batch([p, "first"]),
        reads("HGETALL", f"{p}:ref"),
        batch([p, "refuse"]),
        other([p, "other"]),
        reads("GET", f"{p}:ref"),
        batch([p, "wrongtype"]),
        reads("SET", f"{p}:ref", None),  # an argument that cannot be sent
        return_exceptions=True,
    )
    assert len(writes) == 1
    assert outcomes[0][0] == b"first"
    assert isinstance(outcomes[1], ResponseError) and "WRONGTYPE" in str(outcomes[1])
    assert isinstance(outcomes[2], ResponseError) and "refused" in str(outcomes[2])
    assert outcomes[3] == b"other"
    assert outcomes[4] == b"uid-1"
    assert isinstance(outcomes[5], ResponseError) and "WRONGTYPE" in str(outcomes[5])
    assert isinstance(outcomes[6], DataError)
    assert await runs(client, p) == 4  # the warm call and three, once each
    assert await reads("GET", f"{p}:ref") == b"uid-1"
    await batch.close()
    await client.aclose()


def test_script_arguments_go_as_the_bytes_hiredis_would_send() -> None:
    import hiredis

    from hub.store.redis import _wire

    class Text(str):
        pass

    values = [
        "hub:x",
        Text("sub"),
        b"\x00raw",
        0,
        -7,
        1763770000123,
        0.5,
        604800.0,
        -0.0,
        1e-07,
        2.5e300,
        float("inf"),
        "Zoë \u2028",
    ]
    for value, wired in zip(values, _wire(values), strict=True):
        assert hiredis.pack_command(("X", wired)) == hiredis.pack_command(("X", value))
    with pytest.raises(ValueError, match="not valid UTF-8"):
        _wire(["\udcff"])
    with pytest.raises(ValueError, match="cannot send a list"):
        _wire([[1]])
