"""Delivery: the instructions one worker runs per job, counted under valgrind.

On a shared machine, jobs per second and CPU seconds per job move by ±20 % from run to
run of the same code; the instructions a process runs barely move. This drains N queued
deliveries (the jobs of ``bench/delivery.py``) with one worker under callgrind, for two
values of N, and prints the difference per job: the cost of a job without the start-up's.
The jobs are queued by a process outside valgrind, the receiver runs on the other core.
Under valgrind the worker runs some 50 times slower, so its batches are smaller than
at full speed: compare checkouts with each other, not with ``bench/delivery.py``.

    python bench/drain_cost.py [--kind webhook] [--checkout DIR ...] [--jobs 200 1200]

``--checkout`` measures another tree's code (a ``git worktree`` of another revision, say)
in the same run; each gets a row. ``--kind round-trip`` counts instead one store read per
round trip (``get_event`` of a missing event, one after the other), against redis-py's
client making the same HGETALL: what the store's batching costs a call at low traffic.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _phase(phase: str, kind: str, jobs: int, prefix: str, url: str, sink: str) -> None:
    """Inside the subprocess: queue the jobs, or drain them (under valgrind), or send as
    many requests with the raw aiohttp client (under valgrind, the baseline)."""
    sys.path[:0] = [str(Path.cwd() / "bench"), str(Path.cwd())]
    import delivery
    import orjson
    from _common import run

    from hub import heap
    from hub.ids import new_id
    from hub.logs import configure_logging
    from hub.store import EndpointPolicy, NewJob
    from hub.store.redis import RedisStore

    configure_logging("warning", "json")
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {0})

    async def go() -> None:
        policy = {kind: EndpointPolicy(circuit=False)}
        store = RedisStore.from_url(url, prefix=prefix, endpoints=policy)
        if kind == "round-trip":  # one store read at a time, or redis-py's own (raw)
            import redis.asyncio as aioredis

            client = aioredis.Redis.from_url(url)
            for _ in range(jobs if phase != "enqueue" else 0):
                if phase == "raw":
                    await client.hgetall(f"{prefix}event:missing")
                else:
                    await store.get_event("missing")
            await client.aclose()
        elif phase == "raw":
            body = orjson.dumps(delivery.event(0).to_json())
            await delivery.raw_client(sink, jobs, body)
        elif phase == "enqueue":
            now = time.time()
            payloads = (
                {
                    "route": "bench",
                    "event": delivery.event(n).to_json(),
                    "message": {"event": "calenso.booking.inform-customer"},
                }
                for n in range(jobs)
            )
            await store.enqueue(
                [
                    NewJob(new_id("job"), "deliver", p, now, kind, f"e{n}", f"{kind}|b{n}")
                    for n, p in enumerate(payloads)
                ],
                now,
            )
        else:
            _, dead = await delivery.drain(store, sink, kind)
            if dead:
                raise SystemExit(f"{dead} deliveries failed")
        await store.close()

    heap.settle()  # as `hub serve` and `hub worker` do, for the worker and the raw client
    run(go())


def instructions(
    checkout: Path, kind: str, jobs: int, url: str, sink: str, raw: bool = False
) -> int:
    """Instructions of a process that drains ``jobs`` deliveries (or sends as many requests
    with the raw client), start-up included."""
    from _common import drop_prefix, new_prefix

    prefix = new_prefix("drain-cost")
    me = [sys.executable, str(Path(__file__).resolve())]
    callgrind = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    args = [kind, str(jobs), prefix, url, sink]
    try:
        if not raw:
            subprocess.run([*me, "--phase", "enqueue", *args], cwd=checkout, check=True)
        counted = subprocess.run(
            [*callgrind, *me, "--phase", "raw" if raw else "drain", *args],
            cwd=checkout,
            capture_output=True,
            text=True,
        )
    finally:
        drop_prefix(url, prefix)
    found = re.search(r"Collected : (\d+)", counted.stderr)
    if counted.returncode or not found:
        raise SystemExit(f"the drain under valgrind failed:\n{counted.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--kind",
        choices=["webhook", "inxmail", "round-trip"],
        default="webhook",
        help="round-trip: one store read (HGETALL) per round trip, against redis-py's",
    )
    parser.add_argument("--jobs", type=int, nargs=2, default=[200, 1200])
    parser.add_argument("--checkout", type=Path, action="append", default=[])
    parser.add_argument("--phase", choices=["enqueue", "drain", "raw"], help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.phase:
        kind, jobs, prefix, url, sink = rest
        _phase(args.phase, kind, int(jobs), prefix, url, sink)
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("needs valgrind (Debian: apt-get install valgrind)")
    sys.path.insert(0, str(HERE))
    from _common import free_port, redis_url, start, stop, table, wait_listening

    checkouts = [c.resolve() for c in args.checkout] or [HERE.parent]
    small, large = sorted(args.jobs)
    trips = args.kind == "round-trip"
    unit, base = ("call", "redis-py") if trips else ("job", "raw client")
    rows = [["run", f"instructions per {unit}", f"{base} / this"]]
    with redis_url() as url:
        port = free_port()
        sink_process = start([sys.executable, "bench/_sink.py", str(port)], core=1)
        sink = f"http://127.0.0.1:{port}"
        try:
            wait_listening(port)

            def per_job(checkout: Path, raw: bool = False) -> float:
                counts = [
                    instructions(checkout, args.kind, n, url, sink, raw) for n in (small, large)
                ]
                return (counts[1] - counts[0]) / (large - small)

            baseline = per_job(HERE.parent, raw=True)
            rows.append(
                [
                    "redis-py client, the same reads"
                    if trips
                    else "raw aiohttp client, the same requests",
                    f"{baseline:,.0f}",
                    "1.00x",
                ]
            )
            for checkout in checkouts:
                cost = per_job(checkout)
                rows.append(
                    [
                        f"hub store, a read a round trip ({checkout})"
                        if trips
                        else f"hub worker, {args.kind} ({checkout})",
                        f"{cost:,.0f}",
                        f"{baseline / cost:.2f}x",
                    ]
                )
                print(" ".join(rows[-1]), file=sys.stderr, flush=True)
        finally:
            stop(sink_process)
    print(table(rows))


if __name__ == "__main__":
    main()
