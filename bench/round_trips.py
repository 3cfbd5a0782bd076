"""The hub process's CPU per Redis call on the hot path: ``Reads`` (plain commands) and
``_Batch`` (a script's EVALSHA calls), batches of 1 and of 8 calls per round trip.

Each case runs its round trips one after the other on uvloop, against the Redis of
``$HUB_TEST_REDIS_URL`` (else 127.0.0.1:6379, else a throwaway server), and prints the
process CPU (``time.process_time``) per call and per round trip; Redis's own CPU is not in
it. It runs the hub of the checkout it is in: to compare two, run a copy in each.

    python bench/round_trips.py [--round-trips 4000] [--url redis+sentinel://...]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import drop_prefix, new_prefix, redis_url, run, table

import hub
from hub.store.connect import client_for
from hub.store.reads import Reads
from hub.store.redis import _Batch

SCRIPT = "return #ARGV"


async def measure(url: str, round_trips: int) -> list[list[str]]:
    prefix = new_prefix("round-trips")
    client = client_for(url)
    reads = Reads(client)
    batch = _Batch(client, client.register_script(SCRIPT))
    await client.hset(f"{prefix}:event", mapping={"source": "calendly", "body": b"{}" * 200})
    await client.set(f"{prefix}:ref", "uid-1")
    cases = {
        "Reads GET": lambda: reads("GET", f"{prefix}:ref"),
        "Reads HGETALL": lambda: reads("HGETALL", f"{prefix}:event"),
        "_Batch EVALSHA": lambda: batch([prefix, 1, "event-id", b"x" * 300, 2.5]),
    }
    rows = []
    try:
        for name, call in cases.items():
            for size in (1, 8):
                for _ in range(200):  # warm: connections, the script loaded
                    await asyncio.gather(*(call() for _ in range(size)))
                started = time.process_time()
                for _ in range(round_trips):
                    await asyncio.gather(*(call() for _ in range(size)))
                cpu = time.process_time() - started
                per_trip = cpu / round_trips * 1e6
                rows.append([name, str(size), f"{per_trip / size:.1f}", f"{per_trip:.1f}"])
    finally:
        await reads.close()
        await batch.close()
        await client.aclose()
        if url.startswith(("redis://", "unix://")):
            drop_prefix(url, prefix)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n\n")[0])
    parser.add_argument("--round-trips", type=int, default=4000)
    parser.add_argument("--url", help="a store URL (default: the test Redis)")
    args = parser.parse_args()
    print(f"hub from {Path(hub.__file__).parent.parent}")
    if args.url:
        rows = run(measure(args.url, args.round_trips))
    else:
        with redis_url() as url:
            rows = run(measure(url, args.round_trips))
    print(table([["case", "calls/trip", "CPU µs/call", "CPU µs/trip"], *rows]))


if __name__ == "__main__":
    main()
