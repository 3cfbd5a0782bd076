"""Testing helpers for connector authors (and the hub's own suite).

Use them from a conftest.py: ``pytest_plugins = ["hub.testing"]``. They need
pytest-aiohttp and a real Redis (``HUB_TEST_REDIS_URL``, default 127.0.0.1:6379).

Fixtures:
    redis_prefix   a throwaway key prefix, its keys deleted after the test
    sink           a real HTTP server that records requests and answers as told
    hub_clock      a ManualClock: advance it instead of sleeping
    run_hub        ``await run_hub(config_text, environ=..., plugins=[...])`` → HubHarness:
                   the app under a test client, plus a worker to ``drain()``
Helpers:
    sign_standard_webhook(secret, msg_id, timestamp, body) → headers
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient
from standardwebhooks import Webhook

from hub.app import create_app, make_worker
from hub.appkeys import STORE
from hub.clock import ManualClock
from hub.config import parse_config
from hub.plugins import get_plugin_manager
from hub.store.redis import RedisStore
from hub.worker import Worker

__all__ = [
    "HubHarness",
    "Received",
    "Sink",
    "hub_clock",
    "redis_prefix",
    "redis_url",
    "run_hub",
    "sign_standard_webhook",
    "sink",
]

REDIS_URL = os.environ.get("HUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def pytest_configure(config: pytest.Config) -> None:
    """Async tests and fixtures run without the author choosing pytest-asyncio's mode: it
    is ``auto`` unless the command line chose one (the ini file cannot tell strict from
    unset; auto runs strict mode's marked tests as well)."""
    if config.getoption("asyncio_mode", None) is None:
        config.option.asyncio_mode = "auto"


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Sink:
    """A real HTTP receiver that records every request and answers as scripted:
    ``respond(received)`` if set and not None, else the next of ``statuses`` (a status or
    ``(status, headers)``), else ``default``. The next ``hang`` requests get no answer
    until the test ends."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.statuses: deque[int | tuple[int, dict[str, str]]] = deque()
        self.default = 202
        self.respond: Callable[[Received], int | None] | None = None
        self.hang = 0
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


@dataclass
class HubHarness:
    """A hub under test: ``client`` posts webhooks, ``worker.drain()`` runs what is due at
    ``clock``'s time, ``store`` reads the outcome."""

    client: TestClient
    worker: Worker
    store: RedisStore
    clock: ManualClock
    prefix: str

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


def sign_standard_webhook(
    secret: str, msg_id: str, timestamp: float, body: str | bytes
) -> dict[str, str]:
    """The headers a Standard Webhooks sender puts on ``body``."""
    text = body.decode() if isinstance(body, bytes) else body
    moment = datetime.fromtimestamp(int(timestamp), UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp)),
        "webhook-signature": Webhook(secret).sign(msg_id, moment, text),
    }


@pytest.fixture
def redis_url() -> str:
    return REDIS_URL


@pytest.fixture
async def redis_prefix(redis_url: str) -> Any:
    prefix = f"hubtest:{uuid.uuid4().hex[:12]}"
    yield prefix
    client = aioredis.Redis.from_url(redis_url)
    keys = [key async for key in client.scan_iter(f"{prefix}:*", count=500)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
def hub_clock() -> ManualClock:
    return ManualClock(datetime(2026, 11, 20, 8, 15, 45, tzinfo=UTC))


@pytest.fixture
async def sink(aiohttp_server: Any) -> Any:
    receiver = Sink()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", receiver.handle)
    server = await aiohttp_server(app)
    receiver.url = str(server.make_url("")).rstrip("/")
    yield receiver
    receiver._released.set()


@pytest.fixture
async def run_hub(aiohttp_client: Any, redis_prefix: str, hub_clock: ManualClock) -> Any:
    """``await run_hub(config_text, environ={...}, plugins=[plugin, ...])``. In the text,
    ``{redis_url}`` and ``{prefix}`` are filled in; ``plugins`` are registered on the
    plugin manager next to the installed ones."""

    async def start(
        text: str,
        *,
        environ: Mapping[str, str] | None = None,
        plugins: Sequence[object] = (),
    ) -> HubHarness:
        pm = get_plugin_manager()
        for plugin in plugins:
            pm.register(plugin)
        text = text.replace("{redis_url}", REDIS_URL).replace("{prefix}", redis_prefix)
        config = parse_config(text, pm, environ=environ or {})
        app = create_app(config, plugin_manager=pm, clock=hub_clock)
        client = await aiohttp_client(app)
        return HubHarness(client, make_worker(app), app[STORE], hub_clock, redis_prefix)

    return start
