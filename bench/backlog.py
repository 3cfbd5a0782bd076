"""Backlog: Redis memory per queued delivery with a large backlog, and the time one worker
takes to drain it to a local receiver.

Each job is a signed-webhook delivery of one canonical booking event, as the hub queues
them: the event with the provider's raw webhook in it (about 4 KB of JSON). Memory is
Redis's own count (INFO used_memory) before and after enqueueing.

    python bench/backlog.py [--jobs 100000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import orjson
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    FIXTURE,
    drop_prefix,
    free_port,
    new_prefix,
    redis_url,
    run,
    start,
    stop,
    wait_listening,
)
from delivery import drain, event

from hub.ids import new_id
from hub.logs import configure_logging
from hub.store import EndpointPolicy, NewJob
from hub.store.redis import RedisStore


def used_memory(url: str) -> int:
    return int(redis.Redis.from_url(url).info("memory")["used_memory"])


async def measure(url: str, sink: str, jobs: int) -> tuple[float, float, float]:
    prefix = new_prefix("backlog")
    store = RedisStore.from_url(
        url, prefix=prefix, endpoints={"hook": EndpointPolicy(circuit=False)}
    )
    raw = orjson.loads(FIXTURE.read_bytes())
    payloads = [
        {"route": "bench", "event": {**event(n).to_json(), "raw": raw}, "message": {}}
        for n in range(jobs)
    ]
    payload_bytes = sum(len(orjson.dumps(p)) for p in payloads) / jobs
    now = time.time()
    before = used_memory(url)
    await store.enqueue(
        [
            NewJob(new_id("job"), "deliver", p, now, "hook", f"e{n}", f"hook|b{n}")
            for n, p in enumerate(payloads)
        ],
        now,
    )
    per_job = (used_memory(url) - before) / jobs
    drained, _ = await drain(store, sink, "hook")
    await store.close()
    drop_prefix(url, prefix)
    return payload_bytes, per_job, drained.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=100_000)
    args = parser.parse_args()
    configure_logging("warning", "json")
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {0})
    with redis_url() as url:
        port = free_port()
        sink = start([sys.executable, "bench/_sink.py", str(port)], core=1)
        try:
            wait_listening(port)
            payload, per_job, drained = run(measure(url, f"http://127.0.0.1:{port}", args.jobs))
        finally:
            stop(sink)
    ratio = per_job / payload
    print(
        f"backlog of {args.jobs} jobs: payload {payload:.0f} B, Redis memory {per_job:.0f} B "
        f"a job = {ratio:.2f}x its payload (target <= 2x) {'OK' if ratio <= 2 else 'MISSED'}"
    )
    print(f"backlog drained by one worker in {drained:.1f} s ({args.jobs / drained:.0f} jobs/s)")


if __name__ == "__main__":
    main()
