"""End to end: signed Calendly webhooks at a fixed rate into ``hub serve`` (intake and
worker in one process), Inxmail events out at a receiver; latency from the hub's 202 to
the event's arrival.

The sender (this process) keeps the rate open-loop: each request leaves at its own time,
whether or not the earlier ones were answered.

    python bench/e2e.py [--rate 1000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    drop_prefix,
    free_port,
    hub_config,
    new_prefix,
    redis_url,
    run,
    signed,
    start,
    stop,
    table,
    wait_listening,
)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def send(port: int, rate: int, seconds: int) -> tuple[dict[str, float], list[float]]:
    """POST rate x seconds webhooks at their times; return when each was accepted (by
    invitee URI) and how long each accept took."""
    total = rate * seconds
    now = int(time.time())
    bodies = [signed(n, now) for n in range(total)]
    accepted: dict[str, float] = {}
    accept_ms: list[float] = []
    url = f"http://127.0.0.1:{port}/hooks/calendly"
    connector = aiohttp.TCPConnector(limit=512)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def one(signature: str, body: bytes) -> None:
            sent = time.time()
            async with http.post(
                url,
                data=body,
                headers={
                    "Calendly-Webhook-Signature": signature,
                    "Content-Type": "application/json",
                },
            ) as response:
                await response.read()
                if response.status != 202:
                    raise RuntimeError(f"hub answered {response.status}")
            done = time.time()
            accept_ms.append((done - sent) * 1000)
            accepted[json.loads(body)["payload"]["uri"]] = done

        loop = asyncio.get_running_loop()
        start_at = loop.time() + 0.2
        tasks = []
        for n, (signature, body) in enumerate(bodies):
            delay = start_at + n / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(signature, body)))
        await asyncio.gather(*tasks)
    return accepted, accept_ms


async def wait_for_arrivals(port: int, expected: int, within: float = 120) -> list[list]:
    """The receiver's arrivals, once all ``expected`` have come (or the time is up)."""
    async with aiohttp.ClientSession() as http:
        deadline = time.time() + within
        while True:
            async with http.get(f"http://127.0.0.1:{port}/arrivals") as response:
                arrivals = await response.json()
            if len(arrivals) >= expected or time.time() > deadline:
                return arrivals
            await asyncio.sleep(0.25)  # the receiver is another process: look again


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="hub-bench-e2e-"))
    with redis_url() as url:
        prefix = new_prefix("e2e")
        hub_port, sink_port = free_port(), free_port()
        config = workdir / "hub.yaml"
        config.write_text(
            hub_config(url, prefix, port=hub_port, sink=f"http://127.0.0.1:{sink_port}")
        )
        sink = start([sys.executable, "bench/_sink.py", str(sink_port), "--record"], core=1)
        hub = start(
            [sys.executable, "-m", "hub", "serve", "--config", str(config)],
            core=0,
            log=workdir / "hub.log",
        )
        try:
            wait_listening(sink_port)
            wait_listening(hub_port)
            accepted, accept_ms = run(send(hub_port, args.rate, args.seconds))
            expected = 2 * len(accepted)  # inform-customer and inform-partner
            arrivals = run(wait_for_arrivals(sink_port, expected))
        finally:
            stop(hub)
            stop(sink)
            drop_prefix(url, prefix)
    latencies = [(at - accepted[uri]) * 1000 for at, uri in arrivals if uri in accepted]
    rows = [["measure", "p50 ms", "p90 ms", "p99 ms", "max ms"]]
    for name, values in (
        ("accept (request → 202)", accept_ms),
        ("delivery (202 → arrival)", latencies),
    ):
        rows.append(
            [name]
            + [f"{percentile(values, q):.1f}" for q in (0.5, 0.9, 0.99)]
            + [f"{max(values):.1f}"]
        )
    print(table(rows))
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    print(
        f"end to end at {args.rate}/s: {len(latencies)} events, p50 {p50:.1f} ms "
        f"(target <= 20) p99 {p99:.1f} ms (target <= 100) "
        f"{'OK' if p50 <= 20 and p99 <= 100 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
