"""Redis clients for the store's URL schemes.

    redis://[[user]:password@]host:port/db         one Redis (rediss:// with TLS)
    unix:///path/to/redis.sock?db=0                 one Redis on a unix socket
    redis+sentinel://[[user]:password@]h1:26379,h2:26379/service/db
                                                    a Sentinel group (rediss+sentinel://
                                                    with TLS to sentinels and servers)
    redis+cluster://[[user]:password@]h1:7000,h2:7001
                                                    a Redis Cluster (rediss+cluster://)

Query options of the Sentinel scheme: ``sentinel_password`` (and ``sentinel_username``)
when the sentinels ask for other credentials than the servers.
"""

from __future__ import annotations

import asyncio
import codecs
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection
from redis.asyncio.sentinel import (
    Sentinel,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
)

__all__ = ["PLAIN_SCHEMES", "SCHEMES", "StoreUrl", "client_for", "parse_store_url"]

PLAIN_SCHEMES = ("redis", "rediss", "unix")
SCHEMES = (*PLAIN_SCHEMES, "redis+sentinel", "rediss+sentinel", "redis+cluster", "rediss+cluster")
_TIMEOUTS = {"socket_connect_timeout": 2, "socket_timeout": 5}


@dataclass(frozen=True)
class StoreUrl:
    kind: str  # plain | sentinel | cluster
    url: str
    hosts: list[tuple[str, int]] = field(default_factory=list)
    service: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False
    options: dict[str, str] = field(default_factory=dict)


def _hosts(netloc: str, default_port: int) -> list[tuple[str, int]]:
    hosts = []
    for part in netloc.split(","):
        part = part.strip()
        if not part:
            raise ValueError("an empty host in the host list")
        if part.startswith("["):  # [ipv6]:port
            host, _, rest = part[1:].partition("]")
            port = rest.lstrip(":") or str(default_port)
        else:
            host, _, port = part.rpartition(":") if ":" in part else (part, "", "")
            port = port or str(default_port)
        if not host:
            raise ValueError(f"host {part!r} has no name")
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"host {part!r} has no valid port")
        hosts.append((host, int(port)))
    return hosts


def parse_store_url(url: str) -> StoreUrl:
    """Read a store URL; ValueError names what is wrong."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in SCHEMES:
        raise ValueError(
            "expected a redis://, rediss://, unix://, redis+sentinel:// or redis+cluster:// "
            "URL, or embedded"
        )
    if scheme in PLAIN_SCHEMES:
        return StoreUrl("plain", url, tls=scheme == "rediss")
    kind = scheme.partition("+")[2]
    tls = scheme.startswith("rediss")
    # the host list has commas, which urlsplit takes as one netloc: fine
    parts = urlsplit("redis://" + rest)
    netloc = parts.netloc
    userinfo, at, hostlist = netloc.rpartition("@")
    if not at:
        userinfo, hostlist = "", netloc
    username = password = None
    if userinfo:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    if not hostlist:
        raise ValueError(f"a {scheme}:// URL needs at least one host")
    hosts = _hosts(hostlist, 26379 if kind == "sentinel" else 6379)
    path = [unquote(p) for p in parts.path.split("/") if p]
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    service, db = "", 0
    if kind == "sentinel":
        if not path:
            raise ValueError("a redis+sentinel:// URL names the service: .../mymaster/0")
        service = path[0]
        if len(path) > 1:
            if not path[1].isdigit():
                raise ValueError(f"database {path[1]!r} is not a number")
            db = int(path[1])
        if len(path) > 2:
            raise ValueError("a redis+sentinel:// URL has the form host,host/service/db")
    elif path:
        raise ValueError("a redis+cluster:// URL has no path: a Cluster has database 0 only")
    return StoreUrl(kind, url, hosts, service, db, username, password, tls, options)


class _LeanConnection:
    """A redis-py asyncio connection that costs the hub less CPU per command, with the same
    bytes on the wire and the same errors:

    - commands are packed by hiredis, in C, rather than by redis-py's Python (its sync
      connections already use hiredis so); an argument hiredis refuses (a bytearray, a
      bool) goes to redis-py's packer, which sends or refuses it as before;
    - a command the socket takes at once is written without redis-py's timer for its
      socket timeout (in Python 3.11 a task of its own per write); redis-py's send still
      does what needs more: connecting, a health check that is due, a socket to drain or
      one that failed."""

    def pack_command(self, *args: Any) -> list[bytes]:
        name = args[0]
        packed = args
        # a command name with its subcommand ("SCRIPT LOAD") goes as two arguments
        if isinstance(name, str):
            if not (name.isascii() and name.isalpha()):
                packed = (*name.encode().split(), *args[1:])
        elif not isinstance(name, bytes):
            return super().pack_command(*args)  # type: ignore[misc]
        elif b" " in name:
            packed = (*name.split(), *args[1:])
        try:
            return [hiredis.pack_command(packed)]
        except Exception:
            return super().pack_command(*args)  # type: ignore[misc]

    def pack_commands(self, commands: Any) -> list[bytes]:
        return [b"".join([chunk for command in commands for chunk in self.pack_command(*command)])]

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        writer = getattr(self, "_writer", None)
        if (
            writer is None
            or type(command) is not list
            or (
                check_health
                and self.health_check_interval  # type: ignore[attr-defined]
                and asyncio.get_running_loop().time() > self.next_health_check  # type: ignore[attr-defined]
            )
            or writer.transport.get_write_buffer_size()
            or writer.transport.is_closing()
        ):
            return await super().send_packed_command(command, check_health)  # type: ignore[misc]
        writer.writelines(command)
        if writer.transport.get_write_buffer_size() or writer.transport.is_closing():
            # what the socket did not take, or its failure: redis-py's drain and errors
            await super().send_packed_command([], check_health=False)  # type: ignore[misc]


class _Connection(_LeanConnection, aioredis.Connection):
    pass


class _SSLConnection(_LeanConnection, SSLConnection):
    pass


class _UnixConnection(_LeanConnection, UnixDomainSocketConnection):
    pass


class _SentinelConnection(_LeanConnection, SentinelManagedConnection):
    pass


class _SentinelSSLConnection(_LeanConnection, SentinelManagedSSLConnection):
    pass


_LEAN: dict[type, type] = {
    aioredis.Connection: _Connection,
    SSLConnection: _SSLConnection,
    UnixDomainSocketConnection: _UnixConnection,
    SentinelManagedConnection: _SentinelConnection,
    SentinelManagedSSLConnection: _SentinelSSLConnection,
}


def _lean(client: aioredis.Redis) -> aioredis.Redis:
    """``client`` with lean connections in its pool: where its text is strict UTF-8, as
    hiredis encodes it."""
    pool = client.connection_pool
    options = pool.connection_kwargs
    encoding = codecs.lookup(options.get("encoding", "utf-8")).name
    if encoding == "utf-8" and options.get("encoding_errors", "strict") == "strict":
        pool.connection_class = _LEAN.get(pool.connection_class, pool.connection_class)
    return client


def client_for(url: str, **extra: Any) -> aioredis.Redis | RedisCluster:
    """A client for the store URL: plain, through the sentinels, or to the cluster."""
    parsed = parse_store_url(url)
    if parsed.kind == "plain":
        return _lean(aioredis.Redis.from_url(url, health_check_interval=10, **_TIMEOUTS, **extra))
    auth = {"username": parsed.username, "password": parsed.password}
    tls = {"ssl": True} if parsed.tls else {}
    if parsed.kind == "cluster":
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in parsed.hosts],
            **auth,
            **tls,
            **_TIMEOUTS,
            **extra,
        )
    sentinel_auth = {
        "username": parsed.options.get("sentinel_username", parsed.username),
        "password": parsed.options.get("sentinel_password", parsed.password),
    }
    sentinel = Sentinel(
        parsed.hosts,
        sentinel_kwargs={**sentinel_auth, **tls, **_TIMEOUTS},
        **auth,
        **tls,
        **_TIMEOUTS,
        **extra,
    )
    return _lean(sentinel.master_for(parsed.service, db=parsed.db, health_check_interval=10))
