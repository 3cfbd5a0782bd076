"""Delivery: N queued deliveries drained by one worker to a local sink, against the raw
aiohttp client sending the same N requests, and against saq running the same jobs.

All three send to the same bare receiver (bench/_sink.py) on the other core, 64 at a time;
a Redis server of this machine shares the receiver's core, as in ``bench/e2e.py``
(``--redis-anywhere`` leaves it where the kernel puts it, taking time from the worker's).
The hub's deliveries are Inxmail events: each attempt builds the Calenso payload and its
invitation, POSTs it, and records the outcome atomically in Redis. The raw client and saq
send a body built once.

    python bench/delivery.py [--jobs 20000] [--rounds 3] [--redis-anywhere]

Each round runs the four in turn; the ratios printed are the medians of the rounds' own
ratios (each round's are listed too): the machine's speed moves between rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    drop_prefix,
    free_port,
    new_prefix,
    redis_on_core,
    redis_url,
    run,
    start,
    stop,
    table,
    wait_listening,
)

from connectors.inxmail import Inxmail, InxmailConfig, build_event
from connectors.webhook import WebhookDestination, WebhookDestinationConfig
from hub import heap
from hub.clock import SystemClock
from hub.config import WorkerConfig
from hub.connector import ConnectorContext
from hub.ids import new_id
from hub.logs import configure_logging
from hub.model import Booking, BookingEvent, Person, booking_uuid
from hub.outbound import client_session
from hub.posting import Poster
from hub.routing import Router
from hub.store import EndpointPolicy, NewJob
from hub.store.redis import RedisStore
from hub.worker import Worker

IN_FLIGHT = 64


def event(n: int) -> BookingEvent:
    moment = datetime(2026, 12, 1, 9, tzinfo=UTC)
    person = Person(
        name=f"Client {n}", first_name="Client", last_name=str(n), email=f"c{n}@example.org"
    )
    host = Person(name="Lea Brunner", email="lea@example.org")
    booking = Booking(
        id=f"b{n}", uid=booking_uuid(f"b{n}"), start=moment, end=moment, client=person, host=host
    )
    return BookingEvent(
        id=f"e{n}",
        type="booking_confirmed",
        source="bench",
        inbound_event_id=f"e{n}",
        occurred_at=moment,
        received_at=moment,
        booking=booking,
    )


def inxmail(sink: str) -> InxmailConfig:
    return InxmailConfig(
        connector="inxmail",
        api_url=f"{sink}/v1",
        api_id="bench",
        api_secret="bench",
        circuit={"enabled": False},
    )


@dataclass(frozen=True)
class Run:
    """How long a run took, and the CPU time this process spent in it: the worker, the raw
    client and saq each run here, on one core, so the CPU time per job is theirs and the
    rest of the time they waited (for the receiver, for Redis)."""

    seconds: float
    cpu: float

    def row(self, name: str, jobs: int) -> list[str]:
        return [
            name,
            f"{jobs / self.seconds:.0f}",
            f"{self.seconds:.2f}",
            f"{self.cpu / jobs * 1e6:.0f}",
            f"{self.cpu / self.seconds:.0%}",
        ]


@contextlib.contextmanager
def measured() -> Iterator[list[Run]]:
    """The ``Run`` of the block, in the list it gives, once the block ends."""
    done: list[Run] = []
    wall, cpu = time.perf_counter(), time.process_time()
    yield done
    done.append(Run(time.perf_counter() - wall, time.process_time() - cpu))


async def raw_client(sink: str, jobs: int, body: bytes) -> Run:
    """The baseline: the same number of POSTs, IN_FLIGHT at a time, from one session."""
    connector = aiohttp.TCPConnector(limit=IN_FLIGHT)
    async with aiohttp.ClientSession(connector=connector) as http:
        queue = iter(range(jobs))

        async def sender() -> None:
            for _ in queue:
                async with http.post(
                    f"{sink}/v1/events", data=body, headers={"Content-Type": "application/json"}
                ) as response:
                    await response.read()

        with measured() as done:
            await asyncio.gather(*(sender() for _ in range(IN_FLIGHT)))
        return done[0]


async def hub_worker(url: str, sink: str, jobs: int, kind: str) -> Run:
    """The hub's worker draining ``jobs`` deliveries to an Inxmail or a webhook destination."""
    prefix = new_prefix("delivery")
    store = RedisStore.from_url(url, prefix=prefix, endpoints={kind: EndpointPolicy(circuit=False)})
    now = time.time()
    await store.enqueue(
        [
            NewJob(
                new_id("job"),
                "deliver",
                {
                    "route": "bench",
                    "event": event(n).to_json(),
                    "message": {"event": "calenso.booking.inform-customer"},
                },
                now,
                kind,
                f"e{n}",
                f"{kind}|b{n}",
            )
            for n in range(jobs)
        ],
        now,
    )
    drained, failed = await drain(store, sink, kind)
    await store.close()
    drop_prefix(url, prefix)
    if failed:
        raise SystemExit(f"{failed} deliveries failed")
    return drained


async def drain(store: RedisStore, sink: str, kind: str) -> tuple[Run, int]:
    """Run one worker (IN_FLIGHT at a time) until nothing is due or in flight; return what
    it took and how many jobs died."""
    # the hub's own clients: aiohttp's session for API calls, its delivery client
    posts = Poster()
    async with client_session(aiohttp.TCPConnector(limit=IN_FLIGHT)) as http:
        context = ConnectorContext(http=http, clock=SystemClock(), store=store, posts=posts)
        if kind == "inxmail":
            destination: Any = Inxmail("inxmail", inxmail(sink), context)
        else:
            config = WebhookDestinationConfig(
                connector="webhook",
                url=f"{sink}/v1/events",
                circuit={"enabled": False},
                secrets=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
            )
            destination = WebhookDestination(kind, config, context)
        worker = Worker(
            store=store,
            sources={},
            destinations={kind: destination},
            router=Router([]),
            config=WorkerConfig(concurrency=IN_FLIGHT, poll_interval="5ms"),
            clock=SystemClock(),
        )
        jobs = (await store.stats()).due
        attempts = worker.metrics.jobs.counts
        with measured() as done:
            task = asyncio.create_task(worker.run())
            # the worker runs on: count its outcomes (in this process, no Redis call that
            # would weigh on a slowed-down run, under valgrind, more than on a real one)
            while True:
                finished = attempts.get(("deliver", "done"), 0)
                if finished + attempts.get(("deliver", "dead"), 0) >= jobs:
                    break
                await asyncio.sleep(0.02)
        worker.stop()
        await task
        await posts.close()
        stats = await store.stats()
        if stats.due or stats.in_flight:
            raise SystemExit(f"the drain left {stats.due} due and {stats.in_flight} in flight")
    return done[0], stats.dead


async def saq_worker(url: str, sink: str, jobs: int, body: bytes) -> Run | None:
    try:
        from saq import Queue
        from saq import Worker as SaqWorker
    except ImportError:
        return None
    queue = Queue.from_url(url, name=new_prefix("saq"))
    done = asyncio.Event()
    count = 0
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=IN_FLIGHT))

    async def deliver(ctx: dict, **kwargs: object) -> None:
        nonlocal count
        async with http.post(
            f"{sink}/v1/events", data=body, headers={"Content-Type": "application/json"}
        ) as response:
            await response.read()
        count += 1
        if count == jobs:
            done.set()

    await queue.connect()
    for _ in range(jobs):
        await queue.enqueue(deliver.__qualname__)  # saq names jobs by qualified name
    worker = SaqWorker(queue, functions=[deliver], concurrency=IN_FLIGHT, dequeue_timeout=0.01)
    with measured() as ran:
        task = asyncio.create_task(worker.start())
        await asyncio.wait_for(done.wait(), 600)
    await worker.stop()
    task.cancel()
    await http.close()
    await queue.disconnect()
    drop_prefix(url, f"saq:job:{queue.name}")
    drop_prefix(url, f"saq:{queue.name}")
    return ran[0]


async def main_async(jobs: int, redis_anywhere: bool, rounds: int) -> None:
    runs: list[dict[str, Run | None]] = []
    with redis_url() as url, contextlib.ExitStack() as stack:
        if not redis_anywhere:
            pid = stack.enter_context(redis_on_core(url, 1))
            where = f"on core 1 with the receiver (pid {pid})" if pid else "unpinned"
            print(f"Redis: {where}", file=sys.stderr, flush=True)
        port = free_port()
        sink_process = start([sys.executable, "bench/_sink.py", str(port)], core=1)
        sink = f"http://127.0.0.1:{port}"
        try:
            wait_listening(port)
            body = __import__("orjson").dumps(
                build_event(
                    "calenso.booking.inform-customer", event(0), inxmail(sink), "j", time.time()
                )
            )
            for _ in range(rounds):  # the contenders take turns, round after round
                runs.append(
                    {
                        "raw": await raw_client(sink, jobs, body),
                        "inxmail": await hub_worker(url, sink, jobs, "inxmail"),
                        "webhook": await hub_worker(url, sink, jobs, "webhook"),
                        "saq": await saq_worker(url, sink, jobs, body),
                    }
                )
        finally:
            stop(sink_process)
    names = {
        "raw": "raw aiohttp client",
        "webhook": "hub worker (signed webhook)",
        "inxmail": "hub worker (Inxmail, with Termin.ics)",
        "saq": "saq worker",
    }
    rows = [["round", "run", "jobs/s", "seconds", "CPU µs per job", "busy"]]
    for n, found in enumerate(runs, 1):
        rows += [[str(n), *run.row(names[key], jobs)] for key, run in found.items() if run]
    print(table(rows))

    def median_ratio(ratio: Any) -> str:
        each = [ratio(found) for found in runs]
        return f"{statistics.median(each):.2f}x (rounds: {', '.join(f'{r:.2f}' for r in each)})"

    # (name, key, target vs the raw client, target vs saq); medians of the rounds' ratios
    for name, key, raw_target, saq_target in (
        ("signed webhook", "webhook", 0.5, 3.0),
        ("Inxmail", "inxmail", None, 2.0),
    ):
        ratio = statistics.median(f["raw"].seconds / f[key].seconds for f in runs)  # type: ignore[union-attr]
        line = f"delivery ({name}): hub vs the raw client = " + median_ratio(
            lambda f, key=key: f["raw"].seconds / f[key].seconds
        )
        if raw_target is not None:
            line += f" (target >= {raw_target:g}x) {'OK' if ratio >= raw_target else 'MISSED'}"
        print(line)
        print(
            f"delivery ({name}): by CPU time per job = "
            + median_ratio(lambda f, key=key: f["raw"].cpu / f[key].cpu)
        )
        if all(f["saq"] is not None for f in runs):
            versus = statistics.median(f["saq"].seconds / f[key].seconds for f in runs)  # type: ignore[union-attr]
            print(
                f"delivery ({name}): hub vs saq = "
                + median_ratio(lambda f, key=key: f["saq"].seconds / f[key].seconds)
                + f" (target >= {saq_target:g}x) {'OK' if versus >= saq_target else 'MISSED'}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of all contenders in turn; medians"
    )
    parser.add_argument(
        "--redis-anywhere", action="store_true", help="leave a local Redis server unpinned"
    )
    args = parser.parse_args()
    configure_logging("warning", "json")
    heap.settle()  # as `hub worker` does; the raw client and saq run in this process too
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {0})  # this process on one core, the receiver on the other
    run(main_async(args.jobs, args.redis_anywhere, args.rounds))


if __name__ == "__main__":
    main()
