"""The hub process's CPU per Redis call on the hot path: ``Reads`` (plain commands) and
``_Batch`` (a script's EVALSHA calls), batches of 1 and of 8 calls per round trip; then
webhook-like sequences through a ``RedisStore`` (ACCEPT, BOOK, then FINISH of the dispatch
job and of the two deliveries it hands over) from many coroutines at once.

Each case runs its round trips one after the other on uvloop, against the Redis of
``$HUB_TEST_REDIS_URL`` (else 127.0.0.1:6379, else a throwaway server), and prints the
process CPU (``time.process_time``) per call and per round trip; Redis's own CPU is not in
it. For the sequences it prints the CPU and the writes to Redis per webhook: those the
process sent (counted on its connections), and the reads Redis counted (``INFO stats``,
which counts other clients of the same Redis too). It runs the hub of the checkout it is
in: to compare two, run a copy in each.

    python bench/round_trips.py [--round-trips 4000] [--webhooks 2000] [--url ...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import drop_prefix, new_prefix, redis_url, run, table

import hub
from hub.store import Attempt, Handoff, NewJob
from hub.store.connect import client_for
from hub.store.reads import Reads
from hub.store.redis import RedisStore, _Batch
from hub.testing_redis import counting_writes

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


async def webhooks(url: str, count: int, concurrency: int, rate: float, pausing: bool) -> list[str]:
    """ACCEPT, BOOK and three FINISH per webhook. Without a ``rate``, ``concurrency``
    coroutines run webhooks one after the other; with one, a webhook starts every
    1/``rate`` seconds. ``pausing``: a webhook pauses up to a millisecond between its steps
    (a delivery's HTTP call, say), so the kinds of calls mix as in a running hub; without
    pauses, coroutines move in step, each kind's calls together."""
    prefix = new_prefix("webhooks")
    client = client_for(url)
    store = RedisStore(client, prefix=prefix, dedup_window=600, retention=600)
    writes = counting_writes(client)
    body = b'{"event":"invitee.created","payload":{}}' * 20
    snapshot = {"end": "2030-01-01T10:00:00+00:00", "email": "someone@example.org"}
    now = time.time()
    pauses = random.Random(7)

    async def pause() -> None:
        if pausing:
            await asyncio.sleep(pauses.random() / 1000)

    async def webhook(n: int) -> None:
        accepted = await store.accept(
            "calendly", f"k{n}", body, now, f"evt_{n}", f"job_{n}", handoff=Handoff(1, 60)
        )
        job = accepted.job
        await pause()
        await store.record_booking(f"uid{n}", accepted.id, snapshot, True, [f"r{n}"], now)
        await pause()
        spawn = [
            NewJob(f"job_{n}_{d}", "deliver", {"m": d}, now, "api", accepted.id, f"api|{n}{d}")
            for d in range(2)
        ]
        done = await store.complete(
            job, Attempt(1, now, 0.01, "ok"), now, spawn, handoff=Handoff(2, 60)
        )
        await pause()
        await asyncio.gather(
            *(store.complete(j, Attempt(1, now, 0.01, "ok"), now) for j in done.jobs)
        )

    async def in_step(numbers: range) -> None:
        for n in numbers:
            await webhook(n)

    async def run_all(first: int, total: int) -> None:
        if not rate:
            per = total // concurrency
            await asyncio.gather(
                *(
                    in_step(range(first + i * per, first + (i + 1) * per))
                    for i in range(concurrency)
                )
            )
            return
        loop = asyncio.get_running_loop()
        start = loop.time()
        started = []
        for n in range(total):
            await asyncio.sleep(max(0.0, start + n / rate - loop.time()))
            started.append(asyncio.ensure_future(webhook(first + n)))
        await asyncio.gather(*started)

    async def reads_processed() -> int:
        return int((await client.info("stats"))["total_reads_processed"])

    try:
        await run_all(10**9, concurrency * 10)  # warm: connections, the scripts loaded
        total = count // concurrency * concurrency
        before_writes, before_reads = len(writes), await reads_processed()
        started = time.process_time()
        await run_all(0, total)
        cpu = time.process_time() - started
        sent = len(writes) - before_writes
        counted = await reads_processed() - before_reads - 1  # less the INFO itself
    finally:
        await store.close()
        if url.startswith(("redis://", "unix://")):
            drop_prefix(url, prefix)
    how = f"{rate:g}/s" if rate else f"{concurrency} coroutines"
    how += ", pauses" if pausing else ", in step"
    return [
        f"{total} x (ACCEPT, BOOK, 3 FINISH), {how}",
        f"{cpu / total * 1e6:.0f}",
        f"{sent / total:.2f}",
        f"{counted / total:.2f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n\n")[0])
    parser.add_argument("--round-trips", type=int, default=4000)
    parser.add_argument("--webhooks", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rates", type=float, nargs="*", default=[500, 1000])
    parser.add_argument("--url", help="a store URL (default: the test Redis)")
    args = parser.parse_args()
    print(f"hub from {Path(hub.__file__).parent.parent}")
    with contextlib.nullcontext(args.url) if args.url else redis_url() as url:
        rows = run(measure(url, args.round_trips)) if args.round_trips else []
        sequences = [
            run(webhooks(url, args.webhooks, args.concurrency, rate, pausing))
            for rate, pausing in [(0, False), (0, True), *((r, True) for r in args.rates)]
            if args.webhooks
        ]
    if rows:
        print(table([["case", "calls/trip", "CPU µs/call", "CPU µs/trip"], *rows]))
    if sequences:
        header = ["sequence", "CPU µs/webhook", "writes/webhook", "Redis reads/webhook"]
        print(table([header, *sequences]))


if __name__ == "__main__":
    main()
