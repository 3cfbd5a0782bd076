"""The README's quickstart on a machine with Python and nothing else: ``./scripts/run`` on
a PATH without redis-server, nothing asked of a Redis on 6379, the embedded store."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import aiohttp
import pytest
import standardwebhooks

from connectors.calendly import sign
from hub.testing import Received, Sink
from tests.conftest import fixture_bytes
from tests.test_processes import free_port, ready

pytestmark = pytest.mark.subprocess

ROOT = Path(__file__).parent.parent
SERVERS = {"redis-server", "valkey-server", "redis-sentinel"}
DEMO_WHSEC = "whsec_ZGVtby1zZWNyZXQtb2YtdGhpcnR5LXR3by1ieXRlcyEh"  # scripts/run's


def path_without_redis(into: Path) -> str:
    """A PATH of one directory: every program of PATH but the Redis and Valkey servers."""
    into.mkdir()
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for entry in os.scandir(directory):
            target = into / entry.name
            if entry.name in SERVERS or target.exists() or not os.access(entry.path, os.X_OK):
                continue
            target.symlink_to(entry.path)
    return str(into)


def command_line(pid: int) -> list[bytes]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")


async def first_at(sink: Sink, path: str) -> Received:
    """The first request that arrives at ``path`` (others arrive too)."""
    count = 1
    while True:
        requests = await sink.wait_for(count)
        for request in requests:
            if request.path == path:
                return request
        count = len(requests) + 1


async def test_scripts_run_delivers_with_no_redis_and_stops_with_its_signal(sink, tmp_path) -> None:
    path = path_without_redis(tmp_path / "bin")
    assert shutil.which("redis-server", path=path) is None
    store = Path(tempfile.mkdtemp(prefix="hub-")) / "store"
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.endswith(("_SECRET", "_KEY", "_ID")) and not key.startswith("HUB_")
    }
    env.update(
        PATH=path,
        HUB_PORT=str(port),
        HUB_STORE_PATH=str(store),
        CRM_WEBHOOK_URL=f"{sink.url}/hub-events",
        INXMAIL_API_URL=f"{sink.url}/inxmail",
        AUVIOUS_URL=f"{sink.url}/auvious",
    )
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        run = await asyncio.create_subprocess_exec(
            str(ROOT / "scripts" / "run"), stdout=out, stderr=out, env=env, cwd=tmp_path
        )
    try:
        body = fixture_bytes("calendly/invitee_created.json")
        async with aiohttp.ClientSession() as http:
            await ready(http, f"http://127.0.0.1:{port}/readyz")
            headers = {
                "Calendly-Webhook-Signature": sign("demo-signing-key", int(time.time()), body)
            }
            url = f"http://127.0.0.1:{port}/hooks/calendly"
            async with http.post(url, data=body, headers=headers) as response:
                assert response.status == 202, await response.text()
                event_id = (await response.json())["id"]
        delivered = await first_at(sink, "/hub-events")
        standardwebhooks.Webhook(DEMO_WHSEC).verify(delivered.body, delivered.headers)
        assert delivered.json()["data"]["event"].startswith(event_id)
        # scripts/run became the hub (exec): its signal stops the hub, and the hub the store
        command = command_line(run.pid)
        assert b"serve" in command and not any(part.endswith(b"bash") for part in command)
        run.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(run.wait(), 30) == 0
        assert not (store / "store.sock").exists()
    finally:
        if run.returncode is None:
            run.kill()
        print(log.read_text(errors="replace"))
        shutil.rmtree(store.parent, ignore_errors=True)
