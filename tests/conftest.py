"""Fixtures: a real Redis under a throwaway key prefix, real HTTP sinks, an injected clock."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import yaml

from connectors.calendly import sign
from hub.app import create_app, make_worker
from hub.appkeys import STORE
from hub.clock import ManualClock
from hub.config import Config, parse_config
from hub.plugins import get_plugin_manager
from hub.testing import REDIS_URL, HubHarness, Received, Sink

__all__ = ["REDIS_URL", "Received", "Sink"]
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


async def keys_under(prefix: str) -> list[str]:
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        return sorted([k.decode() async for k in client.scan_iter(f"{prefix}:*", count=500)])
    finally:
        await client.aclose()


@pytest.fixture
def clock(hub_clock: ManualClock) -> ManualClock:
    return hub_clock


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
class Harness(HubHarness):
    """The hub's own harness: a HubHarness with the test's sink and Calendly helpers."""

    sink: Sink | None = None

    async def post_calendly(
        self, body: bytes, *, t: float | None = None, key: str = SIGNING_KEY
    ) -> Any:
        t = int(self.clock.now() if t is None else t)
        headers = {"Calendly-Webhook-Signature": sign(key, t, body)}
        headers["Content-Type"] = "application/json"
        return await self.client.post("/hooks/calendly", data=body, headers=headers)

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
        return Harness(client, make_worker(app), app[STORE], clock, redis_prefix, sink)

    return start
