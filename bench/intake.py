"""Intake: signed Calendly webhooks at the hub vs a bare aiohttp handler.

Both get the same bodies (about 3 KB of Calendly JSON, each a new booking, each signed),
from the same client (wrk, one thread, 32 connections) on the other core, in the same run.
The hub runs its intake only (``hub serve --no-worker``) in one process: signature,
JSON, schema, dedup and one Redis round trip before its 202. Then the hub again at half
its peak rate, for its latency. A local Redis server shares wrk's core while it runs.

    python bench/intake.py [--seconds 8]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    drop_prefix,
    free_port,
    hub_config,
    new_prefix,
    redis_on_core,
    redis_url,
    signed,
    start,
    stop,
    table,
    wait_listening,
    wrk,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--bodies", type=int, default=120_000)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="hub-bench-intake-"))
    bodies = workdir / "requests.tsv"
    now = int(time.time())
    with bodies.open("w") as out:
        for n in range(args.bodies):
            signature, body = signed(n, now)
            out.write(f"{signature}\t{body.decode()}\n")

    with redis_url() as url, redis_on_core(url, 1):  # Redis with wrk, not on the hub's core
        prefix = new_prefix("intake")
        bare_port, hub_port = free_port(), free_port()
        config = workdir / "hub.yaml"
        config.write_text(hub_config(url, prefix, port=hub_port, sink="http://127.0.0.1:9"))
        bare = start([sys.executable, "bench/_sink.py", str(bare_port)], core=0)
        hub = start(
            [sys.executable, "-m", "hub", "serve", "--no-worker", "--config", str(config)],
            core=0,
            log=workdir / "hub.log",
        )
        try:
            wait_listening(bare_port)
            wait_listening(hub_port)
            base = wrk(
                f"http://127.0.0.1:{bare_port}", "/hooks/calendly", bodies, seconds=args.seconds
            )
            peak = wrk(
                f"http://127.0.0.1:{hub_port}", "/hooks/calendly", bodies, seconds=args.seconds
            )
            half = peak.rps / 2
            # 32 connections, each waiting so that together they send at half the peak
            paced = wrk(
                f"http://127.0.0.1:{hub_port}",
                "/hooks/calendly",
                bodies,
                seconds=args.seconds,
                delay_ms=32 * 1000 / half,
            )
        finally:
            stop(hub)
            stop(bare)
            drop_prefix(url, prefix)
        # Two intake processes on one port (SO_REUSEPORT), sharing the machine with wrk.
        prefix = new_prefix("intake2")
        config.write_text(hub_config(url, prefix, port=hub_port, sink="http://127.0.0.1:9"))
        hub = start(
            [
                sys.executable,
                "-m",
                "hub",
                "serve",
                "--no-worker",
                "--processes",
                "2",
                "--config",
                str(config),
            ],
            log=workdir / "hub2.log",
        )
        try:
            wait_listening(hub_port)
            two = wrk(
                f"http://127.0.0.1:{hub_port}",
                "/hooks/calendly",
                bodies,
                seconds=args.seconds,
                core=None,
            )
        finally:
            stop(hub)
            drop_prefix(url, prefix)

    rows = [["run", "req/s", "p50 ms", "p99 ms", "errors"]]
    for name, result in (
        ("bare aiohttp handler", base),
        ("hub intake, peak", peak),
        ("hub intake, 2 processes*", two),
        (f"hub intake at ~{half:.0f}/s", paced),
    ):
        rows.append(
            [
                name,
                f"{result.rps:.0f}",
                f"{result.p50_ms:.2f}",
                f"{result.p99_ms:.2f}",
                result.errors or "-",
            ]
        )
    print(table(rows))
    print("* two processes and wrk share both cores, unpinned")
    if peak.requests > args.bodies:
        print(f"note: {peak.requests} requests > {args.bodies} bodies: some were duplicates")
    ratio = peak.rps / base.rps
    print(
        f"intake: {peak.rps:.0f} req/s vs bare {base.rps:.0f} req/s = {ratio:.2f}x "
        f"(target >= 0.3x) {'OK' if ratio >= 0.3 else 'MISSED'}"
    )
    print(f"intake with 2 processes: {two.rps:.0f} req/s = {two.rps / peak.rps:.2f}x one process")
    print(
        f"intake latency at {paced.rps:.0f} req/s: p50 {paced.p50_ms:.2f} ms, "
        f"p99 {paced.p99_ms:.2f} ms (target p99 <= 10 ms) "
        f"{'OK' if paced.p99_ms <= 10 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
