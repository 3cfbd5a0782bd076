"""Redis cost per webhook end to end, and throughput with 1 and 3 primaries.

N signed Calendly webhooks (each a new booking → one dispatch, two Inxmail deliveries) go
into ``hub serve`` (intake and worker in one process, pinned to core 0) with a bounded
number in flight; the receiver (core 1) counts the deliveries. Redis runs on servers this
script starts:

    1 primary     one redis-server, the key layout of one partition
    3 primaries   a Redis Cluster of 3 primaries with a replica each, 16 partitions

For each shape it reads, on every primary, ``INFO commandstats`` (time spent per command)
and ``INFO cpu`` (the process's CPU, network included) before and after, and the slow log
with a threshold of 0 (every call, its script's SHA) to split EVALSHA by script. It prints
Redis µs per webhook by script, the webhooks per second, and the projected capacity of one
primary core. The baseline is the raw aiohttp client posting the same bodies to the bare
receiver (``bench/_sink.py``) in the same run.

    python bench/redis_cost.py [--webhooks 3000] [--in-flight 64]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    ROOT,
    free_port,
    hub_config,
    run,
    signed,
    start,
    stop,
    table,
    wait_listening,
)

sys.path.insert(0, str(ROOT))

from hub.store import lua
from hub.testing_redis import RedisCluster, RedisServer

SCRIPTS = {
    hashlib.sha1(getattr(lua, name).encode()).hexdigest(): name.lower() for name in lua.__all__
}


async def post_all(port: int, webhooks: int, in_flight: int, path: str) -> float:
    """POST the webhooks, ``in_flight`` at a time; seconds it took."""
    now = int(time.time())
    bodies = [signed(n, now) for n in range(webhooks)]
    url = f"http://127.0.0.1:{port}{path}"
    queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    for item in bodies:
        queue.put_nowait(item)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=in_flight)) as http:

        async def sender() -> None:
            while not queue.empty():
                signature, body = queue.get_nowait()
                headers = {"Calendly-Webhook-Signature": signature}
                async with http.post(url, data=body, headers=headers) as response:
                    await response.read()
                    if response.status != 202:
                        raise RuntimeError(f"answered {response.status}")

        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(in_flight)))
        return time.perf_counter() - started


async def wait_for(port: int, expected: int, within: float = 300) -> float:
    """Until the receiver recorded ``expected`` requests; when the last came (epoch s)."""
    async with aiohttp.ClientSession() as http:
        deadline = time.time() + within
        while True:
            async with http.get(f"http://127.0.0.1:{port}/arrivals") as response:
                arrivals = await response.json()
            if len(arrivals) >= expected:
                return max(at for at, _ in arrivals)
            if time.time() > deadline:
                raise RuntimeError(f"{len(arrivals)} of {expected} deliveries arrived")
            await asyncio.sleep(0.25)  # the receiver is another process: look again


def snapshot(primaries: list[RedisServer]) -> tuple[Counter[str], float]:
    """Microseconds per command, and the CPU seconds of the primaries, so far."""
    usec: Counter[str] = Counter()
    cpu = 0.0
    for node in primaries:
        client = node.client()
        for name, stats in client.info("commandstats").items():
            usec[name.removeprefix("cmdstat_")] += int(stats["usec"])
        info = client.info("cpu")
        cpu += float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
    return usec, cpu


def by_script(primaries: list[RedisServer]) -> Counter[str]:
    """Microseconds per Lua script from the slow log (threshold 0)."""
    usec: Counter[str] = Counter()
    for node in primaries:
        for entry in node.client().slowlog_get(10_000_000):
            raw = entry["command"]
            words = (raw.decode(errors="replace") if isinstance(raw, bytes) else raw).split()
            if len(words) > 1 and words[0].upper() == "EVALSHA":
                usec[SCRIPTS.get(words[1], words[1][:8])] += int(entry["duration"])
    return usec


@contextlib.contextmanager
def shape(name: str) -> Iterator[tuple[str, list[RedisServer], int]]:
    """(store URL, its primaries, partitions) of a shape, stopped afterwards."""
    if name == "1 primary":
        root = Path(tempfile.mkdtemp(prefix="hub-bench-redis-"))
        server = RedisServer(root).start()
        try:
            yield f"redis://{server.address}/0", [server], 1
        finally:
            server.stop()
        return
    with RedisCluster(3) as cluster:
        yield cluster.url, cluster.primaries(), 16


def measure(name: str, webhooks: int, in_flight: int, slowlog: bool) -> dict[str, object]:
    with shape(name) as (url, primaries, partitions):
        for node in primaries:
            client = node.client()
            client.config_set("slowlog-log-slower-than", 0 if slowlog else -1)
            client.config_set("slowlog-max-len", 200 * webhooks + 10_000)
            client.slowlog_reset()
        workdir = Path(tempfile.mkdtemp(prefix="hub-bench-cost-"))
        hub_port, sink_port = free_port(), free_port()
        config = json.loads(
            hub_config(url, "bench", port=hub_port, sink=f"http://127.0.0.1:{sink_port}")
        )
        config["store"]["partitions"] = partitions
        (workdir / "hub.yaml").write_text(json.dumps(config))
        sink = start([sys.executable, "bench/_sink.py", str(sink_port), "--record"], core=1)
        hub = start(
            [sys.executable, "-m", "hub", "serve", "--config", str(workdir / "hub.yaml")],
            core=0,
            log=workdir / "hub.log",
        )
        try:
            wait_listening(sink_port)
            wait_listening(hub_port)
            before, cpu_before = snapshot(primaries)
            started = time.time()
            intake = run(post_all(hub_port, webhooks, in_flight, "/hooks/calendly"))
            last = run(wait_for(sink_port, 2 * webhooks))
            after, cpu_after = snapshot(primaries)
            scripts = by_script(primaries)
        finally:
            stop(hub)
            stop(sink)
    commands = after - before
    return {
        "shape": name,
        "seconds": last - started,
        "intake_per_second": webhooks / intake,
        "per_second": webhooks / (last - started),
        "usec": sum(commands.values()) / webhooks,
        "cpu_usec": (cpu_after - cpu_before) * 1e6 / webhooks,
        "commands": {k: v / webhooks for k, v in commands.most_common()},
        "scripts": {k: v / webhooks for k, v in scripts.most_common()},
    }


def baseline(webhooks: int, in_flight: int) -> float:
    """Webhooks per second the raw client gets from the bare receiver, same bodies."""
    port = free_port()
    sink = start([sys.executable, "bench/_sink.py", str(port)], core=1)
    try:
        wait_listening(port)
        return webhooks / run(post_all(port, webhooks, in_flight, "/"))
    finally:
        stop(sink)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--webhooks", type=int, default=3000)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument(
        "--no-slowlog", action="store_true", help="throughput without logging every call"
    )
    args = parser.parse_args()
    bare = baseline(args.webhooks, args.in_flight)
    results = [
        measure(name, args.webhooks, args.in_flight, not args.no_slowlog)
        for name in ("1 primary", "3 primaries")
    ]
    rows = [
        [
            "shape",
            "accepted/s",
            "delivered/s",
            "delivered vs bare",
            "Redis µs/webhook (commands)",
            "Redis CPU µs/webhook",
        ]
    ]
    for r in results:
        rows.append(
            [
                r["shape"],
                f"{r['intake_per_second']:.0f}",
                f"{r['per_second']:.0f}",
                f"{r['per_second'] / bare:.2f}",
                f"{r['usec']:.0f}",
                f"{r['cpu_usec']:.0f}",
            ]
        )
    print(f"bare receiver, raw client: {bare:.0f} requests/s")
    print(table(rows))
    for r in results:
        print(f"\n{r['shape']}: Redis µs per webhook by command (calls from scripts counted too)")
        print(table([["command", "µs"]] + [[k, f"{v:.1f}"] for k, v in r["commands"].items()]))
        print(f"{r['shape']}: EVALSHA µs per webhook by script (slow log)")
        print(table([["script", "µs"]] + [[k, f"{v:.1f}"] for k, v in r["scripts"].items()]))
    cpu = results[0]["cpu_usec"]
    print(
        f"\none primary core at 100 % ≈ {1e6 / cpu:.0f} webhooks/s end to end "
        f"({cpu:.0f} µs of Redis CPU each, network included)"
    )


if __name__ == "__main__":
    main()
