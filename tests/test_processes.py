"""The hub as an operator runs it: real processes, real signals."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from connectors.calendly import sign
from tests.conftest import ENVIRON, SIGNING_KEY, config_yaml, fixture_bytes

pytestmark = pytest.mark.subprocess


class Process:
    """``hub …`` as a subprocess, its log in a file shown when a test fails."""

    def __init__(self, tmp_path: Path, name: str) -> None:
        self.log = tmp_path / f"{name}.log"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, *args: str) -> Process:
        env = {**os.environ, **ENVIRON, "PYTHONUNBUFFERED": "1"}
        with self.log.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "hub", *args, stdout=log, stderr=log, env=env
            )
        return self

    async def stop(self, signum: int, within: float = 20) -> int:
        assert self.proc is not None
        self.proc.send_signal(signum)
        async with asyncio.timeout(within):
            return await self.proc.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def processes(tmp_path):
    started: list[Process] = []

    def make(name: str) -> Process:
        process = Process(tmp_path, name)
        started.append(process)
        return process

    yield make
    for process in started:
        if process.proc and process.proc.returncode is None:
            process.proc.kill()
        print(f"--- {process.log.name}\n{process.output()}")


def write_config(tmp_path: Path, prefix: str, sink_url: str, **overrides) -> str:
    path = tmp_path / "hub.yaml"
    path.write_text(config_yaml(prefix, sink_url, **overrides))
    return str(path)


async def test_a_worker_killed_mid_delivery_is_recovered_by_the_next(
    start_hub, tmp_path, processes
) -> None:
    hub = await start_hub()
    await hub.accept("calendly/invitee_created.json")
    config = write_config(
        tmp_path,
        hub.prefix,
        hub.sink.url,
        worker__lease="2s",
        destinations__inxmail__timeout="1500ms",
    )

    # The booking's two messages to Inxmail go one after the other (one ordering key):
    # the first is in flight when the worker dies.
    hub.sink.hang = 1
    first = await processes("worker-1").start("worker", "--config", config)
    [held] = await hub.sink.wait_for(1)
    held_id = held.json()["transactionId"]
    assert (await hub.store.get_job(held_id)).state == "running"
    assert await first.stop(signal.SIGKILL) == -signal.SIGKILL

    second = await processes("worker-2").start("worker", "--config", config)
    requests = await hub.sink.wait_for(3)  # after the 2 s lease: the held one, then the next
    assert requests[1].json()["transactionId"] == held_id
    next_id = requests[2].json()["transactionId"]
    assert next_id != held_id
    assert await second.stop(signal.SIGTERM) == 0

    held_job, next_job = await hub.store.get_job(held_id), await hub.store.get_job(next_id)
    assert (held_job.state, next_job.state) == ("done", "done")
    # the killed attempt left no record but counted: the delivery was attempt 2
    assert [(a["number"], a["outcome"]) for a in held_job.attempts] == [(2, "done")]
    assert [(a["number"], a["outcome"]) for a in next_job.attempts] == [(1, "done")]
    stats = await hub.store.stats()
    assert (stats.due, stats.in_flight, stats.dead) == (0, 0, 0)


async def test_sigterm_releases_a_job_that_cannot_finish_in_the_grace(
    start_hub, tmp_path, processes
) -> None:
    hub = await start_hub(
        routes=[
            {
                "name": "customer",
                "on": ["booking_confirmed"],
                "send": [{"to": "inxmail", "event": "calenso.booking.inform-customer"}],
            }
        ]
    )
    await hub.accept("calendly/invitee_created.json")
    config = write_config(
        tmp_path,
        hub.prefix,
        hub.sink.url,
        worker__shutdown_grace="200ms",
        routes=[
            {
                "name": "customer",
                "on": ["booking_confirmed"],
                "send": [{"to": "inxmail", "event": "calenso.booking.inform-customer"}],
            }
        ],
    )
    hub.sink.hang = 1
    worker = await processes("worker").start("worker", "--config", config)
    [held] = await hub.sink.wait_for(1)
    assert await worker.stop(signal.SIGTERM) == 0

    job = await hub.store.get_job(held.json()["transactionId"])
    assert (job.state, job.attempts) == ("due", [])
    hub.clock.advance(time.time() - hub.clock.now())  # the job was released at real time
    assert await hub.worker.drain() == 1
    assert (await hub.store.get_job(job.id)).state == "done"
    assert len(hub.sink.requests) == 2


async def ready(http: aiohttp.ClientSession, url: str) -> None:
    """Until a process just started answers ``url`` with 200."""
    async with asyncio.timeout(20):
        while True:
            try:
                async with http.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)  # it is starting: look again


async def post_when_ready(port: int, body: bytes) -> str:
    """Once the hub just started on ``port`` is ready, post a signed Calendly webhook;
    the id of the accepted event."""
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:
        await ready(http, f"{base}/readyz")
        headers = {"Calendly-Webhook-Signature": sign(SIGNING_KEY, int(time.time()), body)}
        async with http.post(f"{base}/hooks/calendly", data=body, headers=headers) as response:
            assert response.status == 202
            return (await response.json())["id"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_serve_accepts_delivers_and_stops_cleanly_on_sigterm(
    redis_prefix, sink, tmp_path, processes
) -> None:
    from hub.store.redis import RedisStore
    from tests.conftest import REDIS_URL

    port = free_port()
    config = write_config(tmp_path, redis_prefix, sink.url, server__port=port)
    server = await processes("serve").start("serve", "--config", config)
    event_id = await post_when_ready(port, fixture_bytes("calendly/invitee_created.json"))
    delivered = await sink.wait_for(2)
    assert {r.json()["event"] for r in delivered} == {
        "calenso.booking.inform-customer",
        "calenso.booking.inform-partner",
    }
    assert await server.stop(signal.SIGTERM) == 0

    store = RedisStore.from_url(REDIS_URL, prefix=redis_prefix)
    try:
        for request in delivered:
            job = await store.get_job(request.json()["transactionId"])
            assert (job.state, job.event_id) == ("done", event_id)
    finally:
        await store.close()


async def test_serve_with_several_processes_shares_one_port(
    redis_prefix, sink, tmp_path, processes
) -> None:
    port = free_port()
    config = write_config(tmp_path, redis_prefix, sink.url, server__port=port)
    server = await processes("serve-2").start("serve", "--config", config, "--processes", "2")
    async with aiohttp.ClientSession() as http:
        await ready(http, f"http://127.0.0.1:{port}/readyz")
        for n in range(4):
            body = fixture_bytes("calendly/invitee_created.json").replace(
                b"INV0000000042", f"INV00000009{n:02d}".encode()
            )
            headers = {"Calendly-Webhook-Signature": sign(SIGNING_KEY, int(time.time()), body)}
            async with http.post(
                f"http://127.0.0.1:{port}/hooks/calendly", data=body, headers=headers
            ) as response:
                assert response.status == 202
    await sink.wait_for(8)
    assert await server.stop(signal.SIGTERM) == 0
    assert server.output().count('"hub.stopped"') == 2  # both processes stopped cleanly
