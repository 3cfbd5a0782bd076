"""Fixtures: a real Redis under a throwaway key prefix, real HTTP sinks, an injected clock."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient

from connectors.calendly import sign
from hub.app import create_app, make_worker
from hub.appkeys import STORE
from hub.clock import ManualClock
from hub.config import Config, parse_config
from hub.plugins import get_plugin_manager
from hub.store.redis import RedisStore
from hub.worker import Worker

REDIS_URL = os.environ.get("HUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
FIXTURES = Path(__file__).parent / "fixtures"
SIGNING_KEY = "calendly-test-signing-key"
ENVIRON = {
    "CALENDLY_SIGNING_KEY": SIGNING_KEY,
    "INXMAIL_API_ID": "inx-api-id",
    "INXMAIL_API_SECRET": "inx-api-secret",
}
# The fixtures' webhooks were sent a few seconds after this instant.
T0 = datetime(2026, 11, 20, 8, 15, 45, tzinfo=UTC)


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture_json(name: str) -> dict[str, Any]:
    return json.loads(fixture_bytes(name))


@pytest.fixture(scope="session", autouse=True)
def _redis_is_there() -> None:
    async def ping() -> None:
        client = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        try:
            await client.ping()
        finally:
            await client.aclose()

    try:
        asyncio.run(ping())
    except Exception as error:  # the suite needs a real Redis; say so plainly
        pytest.exit(f"no Redis at {REDIS_URL} ({error}); set HUB_TEST_REDIS_URL", returncode=3)


@pytest.fixture
async def redis_prefix() -> Any:
    prefix = f"hubtest:{uuid.uuid4().hex[:12]}"
    yield prefix
    client = aioredis.Redis.from_url(REDIS_URL)
    keys = [key async for key in client.scan_iter(f"{prefix}:*", count=500)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def keys_under(prefix: str) -> list[str]:
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        return sorted([k.decode() async for k in client.scan_iter(f"{prefix}:*", count=500)])
    finally:
        await client.aclose()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Sink:
    """A real HTTP receiver that records every request and answers as scripted."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.statuses: deque[int | tuple[int, dict[str, str]]] = deque()
        self.default = 202
        self.respond: Callable[[Received], int | None] | None = None  # picks a status
        self.hang = 0  # this many next requests get no answer until the test ends
        self.url = ""
        self._arrived = asyncio.Condition()
        self._released = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        received = Received(
            request.method, request.path, dict(request.headers), await request.read()
        )
        async with self._arrived:
            self.requests.append(received)
            self._arrived.notify_all()
        if self.hang:
            self.hang -= 1
            await self._released.wait()
        answer = self.respond(received) if self.respond else None
        if answer is None:
            answer = self.statuses.popleft() if self.statuses else self.default
        status, headers = answer if isinstance(answer, tuple) else (answer, {})
        return web.json_response({"status": status}, status=status, headers=headers)

    async def wait_for(self, count: int, within: float = 30) -> list[Received]:
        """Wait (on arrivals, not on time) until ``count`` requests came in."""
        async with asyncio.timeout(within):
            async with self._arrived:
                await self._arrived.wait_for(lambda: len(self.requests) >= count)
        return self.requests


@pytest.fixture
async def sink(aiohttp_server: Any) -> Any:
    receiver = Sink()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", receiver.handle)
    server = await aiohttp_server(app)
    receiver.url = str(server.make_url("")).rstrip("/")
    yield receiver
    receiver._released.set()


def config_data(prefix: str, sink_url: str, **overrides: Any) -> dict[str, Any]:
    """A test configuration as data: the sample's shape, pointed at the sink."""
    data: dict[str, Any] = {
        "store": {"url": REDIS_URL, "prefix": prefix},
        "server": {"max_body": "64KiB"},
        "worker": {"concurrency": 4, "lease": "30s", "poll_interval": "50ms"},
        "log": {"level": "debug"},
        "sources": {
            "calendly": {"connector": "calendly", "signing_key": "${CALENDLY_SIGNING_KEY}"}
        },
        "destinations": {
            "inxmail": {
                "connector": "inxmail",
                "api_url": f"{sink_url}/api-service/v1",
                "api_id": "${INXMAIL_API_ID}",
                "api_secret": "${INXMAIL_API_SECRET}",
                "secret_expires": "2099-12-31",
                "retry": {"attempts": 3, "base": "10s", "factor": 2, "cap": "1h"},
            }
        },
        "routes": [
            {
                "name": "confirmations",
                "on": ["booking_confirmed", "booking_cancelled"],
                "send": [{"to": "inxmail"}],
            }
        ],
    }
    for path, value in overrides.items():
        *parents, last = path.split("__")
        node = data
        for part in parents:
            node = node[part]
        node[last] = value
    return data


def config_yaml(prefix: str, sink_url: str, **overrides: Any) -> str:
    return yaml.safe_dump(config_data(prefix, sink_url, **overrides), sort_keys=False)


def make_config(prefix: str, sink_url: str, **overrides: Any) -> Config:
    return parse_config(
        config_yaml(prefix, sink_url, **overrides), get_plugin_manager(), environ=ENVIRON
    )


@dataclass
class Harness:
    client: TestClient
    worker: Worker
    store: RedisStore
    clock: ManualClock
    sink: Sink
    prefix: str

    async def post_calendly(
        self, body: bytes, *, t: float | None = None, key: str = SIGNING_KEY
    ) -> Any:
        t = int(self.clock.now() if t is None else t)
        headers = {"Calendly-Webhook-Signature": sign(key, t, body)}
        headers["Content-Type"] = "application/json"
        return await self.client.post("/hooks/calendly", data=body, headers=headers)

    async def dispatch(self) -> int:
        """Run the due dispatch jobs only; deliveries stay queued, their attempts unused."""
        ran = 0
        for job in await self.store.claim(self.clock.now(), 30, 100):
            if job.kind == "dispatch":
                await self.worker.process(job)
                ran += 1
            else:
                await self.store.release(job, self.clock.now())
        return ran

    async def accept(self, fixture: str) -> str:
        response = await self.post_calendly(fixture_bytes(fixture))
        assert response.status == 202, await response.text()
        return (await response.json())["id"]


@pytest.fixture
async def start_hub(aiohttp_client: Any, redis_prefix: str, sink: Sink, clock: ManualClock) -> Any:
    """``await start_hub(**overrides)``: the app under a test client, and a worker sharing
    its store, driven with ``worker.drain()`` and the manual clock."""

    async def start(**overrides: Any) -> Harness:
        config = make_config(redis_prefix, sink.url, **overrides)
        app = create_app(config, clock=clock)
        client = await aiohttp_client(app)
        return Harness(client, make_worker(app), app[STORE], clock, sink, redis_prefix)

    return start
