"""Local Redis shapes for the suite and the benchmarks: redis-server processes on free
ports in a temporary directory, started and stopped by the caller.

    RedisServer     one redis-server (a primary, a replica, a cluster node, a sentinel)
    SentinelGroup   one primary, its replicas and three sentinels: ``url`` is redis+sentinel://
    RedisCluster    primaries with a replica each, made with ``redis-cli --cluster create``:
                    ``url`` is redis+cluster://
    counting_writes the writes an asyncio client sends to Redis, counted as they go

Every wait here is on a condition (a PING answered, the cluster's state ``ok``), bounded
by a timeout. They need ``redis-server`` and ``redis-cli`` on the PATH.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

__all__ = [
    "RedisCluster",
    "RedisServer",
    "SentinelGroup",
    "counting_writes",
    "free_port",
    "synced",
    "wait_until",
]


def free_port(bus: bool = False) -> int:
    """A TCP port nothing listens on (and, with ``bus``, its cluster bus port + 10000)."""
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if not bus:
            return port
        if port + 10000 < 65536:
            with socket.socket() as other:
                try:
                    other.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port pair found")


def wait_until(condition: Callable[[], bool], within: float, what: str) -> None:
    """Poll ``condition`` until it holds; TimeoutError naming ``what`` after ``within`` s."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(redis.RedisError, OSError):
            if condition():
                return
        time.sleep(0.05)
    raise TimeoutError(f"{what} within {within} s")


class RedisServer:
    """One redis-server process; ``kill()`` is SIGKILL, ``start()`` again reuses its dir."""

    def __init__(self, directory: Path, *options: str, sentinel: bool = False) -> None:
        self.port = free_port(bus="--cluster-enabled" in options)
        self.dir = directory / str(self.port)
        self.dir.mkdir(parents=True)
        self.options = options
        self.sentinel = sentinel
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_connect_timeout=1, socket_timeout=2)

    def start(self, *extra: str) -> RedisServer:
        """Start (again); ``extra`` options for this start only."""
        config = self.dir / "redis.conf"
        if not config.exists():
            config.write_text("")  # a sentinel rewrites its config file: it must exist
        args = [shutil.which("redis-server") or "redis-server", str(config)]
        if self.sentinel:
            args.append("--sentinel")
        args += ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir)]
        args += ["--logfile", str(self.dir / "redis.log"), *self.options, *extra]
        if not self.sentinel:  # no persistence; a replica syncs at once (no 5 s delay)
            args += ["--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: self.client().ping(), 10, f"redis-server on {self.port} answers")
        return self

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()


class _Shape:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="hub-redis-"))
        self.servers: list[RedisServer] = []

    def _server(self, *options: str, sentinel: bool = False) -> RedisServer:
        server = RedisServer(self.root, *options, sentinel=sentinel)
        self.servers.append(server)
        return server

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> _Shape:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SentinelGroup(_Shape):
    """A primary, ``replicas`` replicas and three sentinels watching them as ``service``;
    failover starts one second after the primary stops answering."""

    def __init__(self, replicas: int = 1, service: str = "mymaster") -> None:
        super().__init__()
        self.service = service
        primary = self._server().start()
        self.data = [primary]
        for _ in range(replicas):
            self.data.append(self._server("--replicaof", "127.0.0.1", str(primary.port)).start())
        self.sentinels = []
        for _ in range(3):
            sentinel = self._server(sentinel=True)
            (sentinel.dir / "redis.conf").write_text(
                f"sentinel monitor {service} 127.0.0.1 {primary.port} 2\n"
                f"sentinel down-after-milliseconds {service} 1000\n"
                f"sentinel failover-timeout {service} 3000\n"
                f"sentinel parallel-syncs {service} 1\n"
            )
            self.sentinels.append(sentinel.start())
        wait_until(self._replicated, 15, "the replicas are in sync")

    def _replicated(self) -> bool:
        return synced(self.primary(), len(self.data) - 1)

    @property
    def url(self) -> str:
        hosts = ",".join(s.address for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.service}/0"

    def primary(self) -> RedisServer:
        """The data server the sentinels name as primary now."""
        for sentinel in self.sentinels:
            with contextlib.suppress(redis.RedisError):
                _, port = sentinel.client().sentinel_get_master_addr_by_name(self.service)
                return next(s for s in self.data if s.port == int(port))
        raise RuntimeError("no sentinel names a primary")

    def wait_for_new_primary(self, old: RedisServer, within: float = 30) -> RedisServer:
        wait_until(
            lambda: (
                self.primary() is not old
                and self.primary().client().info("replication")["role"] == "master"
            ),
            within,
            "the sentinels promote a replica",
        )
        return self.primary()


class RedisCluster(_Shape):
    """``primaries`` primaries with one replica each; failover after one second."""

    def __init__(self, primaries: int = 3) -> None:
        super().__init__()
        options = ("--cluster-enabled", "yes", "--cluster-node-timeout", "1000")
        nodes = [self._server(*options).start() for _ in range(primaries * 2)]
        subprocess.run(
            [
                shutil.which("redis-cli") or "redis-cli",
                "--cluster",
                "create",
                *(n.address for n in nodes),
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )
        wait_until(self.healthy, 30, "the cluster is ok on every node")

    def healthy(self) -> bool:
        for node in self.servers:
            if node.process is None or node.process.poll() is not None:
                continue
            if _cluster_state(node) != "ok":
                return False
        primaries = self.primaries()
        return len(primaries) * 2 == len(self.servers) and all(synced(p) for p in primaries)

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(n.address for n in self.servers[:3])

    def primaries(self) -> list[RedisServer]:
        found = []
        for node in self.servers:
            if node.process is None or node.process.poll() is not None:
                continue
            with contextlib.suppress(redis.RedisError):
                if node.client().info("replication")["role"] == "master":
                    found.append(node)
        return found

    def primary_for(self, key: str) -> RedisServer:
        """The primary that serves ``key``'s slot now."""
        for node in self.primaries():
            try:
                node.client().exists(key)
            except redis.ResponseError:  # MOVED: another primary serves it
                continue
            return node
        raise RuntimeError(f"no primary serves {key!r}")

    def replica_of(self, primary: RedisServer) -> RedisServer:
        for node in self.servers:
            with contextlib.suppress(redis.RedisError):
                info = node.client().info("replication")
                if info["role"] == "slave" and int(info["master_port"]) == primary.port:
                    return node
        raise RuntimeError(f"no replica of {primary.address}")

    def wait_for_failover(self, dead: RedisServer, heir: RedisServer, within: float = 30) -> None:
        """Until ``heir`` (the dead primary's replica) took over and every live node says
        ok. Restart ``dead`` only then: a primary without persistence that comes back
        before its replica is promoted comes back empty, and its replica copies that."""

        def settled() -> bool:
            if heir.client().info("replication")["role"] != "master":
                return False
            live = [n for n in self.servers if n is not dead]
            return all(_cluster_state(n) == "ok" for n in live)

        wait_until(settled, within, "the cluster fails over")


def synced(primary: RedisServer, replicas: int = 1) -> bool:
    """The primary has ``replicas`` replicas online, acknowledging within the last second."""
    info = primary.client().info("replication")
    found = [info.get(f"slave{i}") for i in range(int(info["connected_slaves"]))]
    online = [r for r in found if r and r["state"] == "online" and int(r["lag"]) <= 1]
    return len(online) >= replicas


def _cluster_state(node: RedisServer) -> str:
    info = node.client().execute_command("CLUSTER INFO")  # parsed into a dict
    return str(info.get("cluster_state", ""))


def counting_writes(client: Any) -> list[int]:
    """A list that grows by one at each write to the connections of ``client``'s pool (a
    redis-py asyncio client of one Redis): the real writes, sent to the real Redis."""
    writes: list[int] = []
    pool = client.connection_pool
    taken = pool.get_connection

    def counted(connection: Any) -> Any:
        if "send_packed_command" not in vars(connection):  # not counted yet
            sent = connection.send_packed_command

            async def send_packed_command(command: Any, check_health: bool = True) -> None:
                writes.append(1)
                return await sent(command, check_health)

            connection.send_packed_command = send_packed_command
        return connection

    async def get_connection(*args: Any) -> Any:
        return counted(await taken(*args))

    # those the pool holds now, a sender's kept connection among them, and those to come
    for connection in [*pool._available_connections, *pool._in_use_connections]:
        counted(connection)
    pool.get_connection = get_connection
    return writes
