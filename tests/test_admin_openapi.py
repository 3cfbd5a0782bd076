"""The admin API against its own OpenAPI document, with schemathesis: generated requests,
valid and invalid, get no server error and every answer conforms to the document."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from connectors.calendly import sign
from hub.app import create_app, make_worker
from hub.config import parse_config
from hub.plugins import get_plugin_manager
from tests.admin_helpers import ADMIN, OPERATOR, booking_body
from tests.conftest import ENVIRON, REDIS_URL, SIGNING_KEY, config_yaml

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


class Served:
    """The hub in a thread of its own, on a free port, for a blocking HTTP client."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner = web.AppRunner(app)
        self.url = ""

    def run(self, coroutine: object, within: float = 30) -> object:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(within)  # type: ignore[arg-type]

    def __enter__(self) -> Served:
        self.thread.start()

        async def start() -> str:
            await self.runner.setup()
            site = web.TCPSite(self.runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            return f"http://127.0.0.1:{port}"

        self.url = str(self.run(start()))
        return self

    def __exit__(self, *exc: object) -> None:
        self.run(self.runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def served(sink_url: str) -> Iterator[Served]:
    prefix = f"hubtest:{uuid.uuid4().hex[:12]}"
    pm = get_plugin_manager()
    config = parse_config(config_yaml(prefix, sink_url, admin=ADMIN), pm, environ=ENVIRON)
    try:
        with Served(create_app(config, plugin_manager=pm)) as server:
            for n in range(3):  # a few events, deliveries and dead letters to read
                body = booking_body(n)
                headers = {
                    "Calendly-Webhook-Signature": sign(SIGNING_KEY, int(time.time()), body),
                    "Content-Type": "application/json",
                }
                answer = requests.post(f"{server.url}/hooks/calendly", data=body, headers=headers)
                assert answer.status_code == 202
            server.run(make_worker(server.app).drain())
            yield server
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(f"{prefix}:*", count=500))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.fixture
def sink_url() -> str:
    return "http://127.0.0.1:9"  # nothing listens: deliveries fail and are retried


def test_every_operation_conforms_to_the_document(served: Served) -> None:
    document = requests.get(f"{served.url}/api/v1/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    schema = schemathesis.openapi.from_dict(document)
    headers = {"Authorization": f"Bearer {OPERATOR}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 13
    session = requests.Session()
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(
                max_examples=8,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def check(case: schemathesis.Case) -> None:
                case.call_and_validate(
                    base_url=served.url, session=session, headers=headers, checks=CHECKS
                )

            check()
