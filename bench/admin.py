"""Admin API: listing events with many stored, and Redis memory the read side's indexes add.

Stores N inbound events through the store's own scripts as the worker does (accept, the
dispatch done with its note and one delivery, the delivery done), then times, over HTTP
against a hub on a local port:

    GET /api/v1/events?limit=50        the newest page
    GET /api/v1/events?email=…         one client's events (a keyed digest lookup)
    GET /api/v1/events?type=…&limit=50 a canonical type's newest page

each against a bare aiohttp handler answering a page of the same size (the baseline,
measured in the same run). Memory: Redis's MEMORY USAGE of every index key (the sorted
sets of the read side) and of the fields the note adds to each event, per event.

    python bench/admin.py [--events 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

import aiohttp
import orjson
import redis
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ENV, drop_prefix, hub_config, new_prefix, redis_url, table

from hub.app import create_app
from hub.config import parse_config
from hub.ids import new_id
from hub.logs import configure_logging
from hub.plugins import get_plugin_manager
from hub.store import Attempt, NewJob
from hub.store.redis import RedisStore
from hub.store.views import EventNote

TOKEN = "bench-admin-token-0123456789"
INDEX_PATTERNS = (":ix:", ":jobs:", ":rate:")
BATCH = 1000


async def fill(store: RedisStore, events: int, t0: float) -> None:
    """``events`` events, each dispatched to one delivery that was delivered."""
    for start in range(0, events, BATCH):
        now = t0 + start / 100  # 100 events a second
        ids = range(start, min(start + BATCH, events))
        await asyncio.gather(
            *(
                store.accept(
                    "calendly",
                    f"d{n}",
                    orjson.dumps({"event": "invitee.created", "n": n}),
                    now + i / 100,
                    new_id("evt", now + i / 100),
                    new_id("job", now),
                )
                for i, n in enumerate(ids)
            )
        )
        now += BATCH / 100
        for kind in ("dispatch", "deliver"):
            jobs = await store.claim(now, 60, BATCH)
            assert len(jobs) == len(ids) and {j.kind for j in jobs} == {kind}, kind
            results = []
            for job in jobs:
                n = job.id  # any stable distinct value per job
                attempt = Attempt(1, now, 1.0, "done", 202)
                if kind == "dispatch":
                    event_id = job.event_id or ""
                    uid = f"booking-{event_id[-12:]}"
                    spawn = [
                        NewJob(
                            id=new_id("job", now),
                            kind="deliver",
                            payload={"route": "all", "message": {"n": n}},
                            due=now,
                            destination="inxmail",
                            event_id=event_id,
                            order_key=f"inxmail|{uid}",
                        )
                    ]
                    note = EventNote(
                        types=["booking_confirmed"],
                        booking=uid,
                        email=f"client-{event_id[-12:]}@example.org",
                        name="invitee.created",
                    )
                    results.append(store.complete(job, attempt, now, spawn, None, None, note))
                else:
                    results.append(store.complete(job, attempt, now, health="ok"))
            await asyncio.gather(*results)


def index_memory(url: str, prefix: str, events: int) -> tuple[float, float]:
    """Bytes per event: of the index keys, and of the fields the note adds to events."""
    client = redis.Redis.from_url(url)
    index = 0
    per_event_jobs = 0
    sampled = 0
    note_fields = 0
    for key in client.scan_iter(f"{prefix}:*", count=5000):
        text = key.decode()[len(prefix) :]
        if text.startswith(INDEX_PATTERNS):
            index += client.memory_usage(key, samples=0) or 0
        elif text.endswith(":jobs"):
            per_event_jobs += client.memory_usage(key, samples=0) or 0
        elif text.startswith(":event:") and text.count(":") == 2 and sampled < 500:
            sampled += 1
            fields = client.hmget(key, "types", "booking", "email", "name")
            # a small hash stores each field as name and value, plus ~2 bytes of headers each
            note_fields += sum(len(f) + len(v or b"") + 4 for f, v in zip(
                (b"types", b"booking", b"email", b"name"), fields, strict=True
            ))  # fmt: skip
    client.close()
    return (index + per_event_jobs) / events, note_fields / max(sampled, 1)


async def timed(session: aiohttp.ClientSession, url: str, runs: int) -> float:
    """Median milliseconds of ``runs`` GETs."""
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        async with session.get(url) as response:
            await response.read()
            assert response.status == 200, await response.text()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


async def main_async(events: int, runs: int) -> None:
    configure_logging("warning", "json")
    with redis_url() as url:
        prefix = new_prefix("admin")
        store = RedisStore.from_url(url, prefix=prefix)
        try:
            t0 = time.time() - events / 100 - 60
            started = time.perf_counter()
            await fill(store, events, t0)
            filled = time.perf_counter() - started
            index_bytes, note_bytes = index_memory(url, prefix, events)
            data = json.loads(hub_config(url, prefix, port=0, sink="http://127.0.0.1:9"))
            data["admin"] = {"tokens": [{"name": "bench", "token": TOKEN, "role": "viewer"}]}
            text = json.dumps(data)
            config = parse_config(text, get_plugin_manager(), environ=ENV)
            hub, hub_url = await serve(create_app(config))
            headers = {"Authorization": f"Bearer {TOKEN}"}
            async with aiohttp.ClientSession(headers=headers) as session:
                async with session.get(f"{hub_url}/api/v1/events?limit=50") as response:
                    page = await response.read()
                newest = orjson.loads(page)["items"][0]
                email_of = f"client-{newest['id'][-12:]}@example.org"
                bare = web.Application()

                async def canned(request: web.Request) -> web.Response:
                    return web.Response(body=page, content_type="application/json")

                bare.router.add_get("/page", canned)
                baseline, baseline_url = await serve(bare)
                base_ms = await timed(session, f"{baseline_url}/page", runs)
                rows = [["request", "median ms", "x bare handler"]]
                for name, path in (
                    ("events?limit=50", "/api/v1/events?limit=50"),
                    ("events?email=…", f"/api/v1/events?email={email_of}"),
                    ("events?type=…&limit=50", "/api/v1/events?type=booking_confirmed&limit=50"),
                ):
                    ms = await timed(session, hub_url + path, runs)
                    rows.append([name, f"{ms:.2f}", f"{ms / base_ms:.1f}"])
                rows.append(["bare handler, same page", f"{base_ms:.2f}", "1.0"])
                await baseline.cleanup()
            await hub.cleanup()
            print(f"{events} events stored in {filled:.0f} s through the store's scripts")
            print(table(rows))
            print(
                f"Redis memory of the read side's indexes: {index_bytes:.0f} bytes per event "
                f"(sorted sets), plus {note_bytes:.0f} bytes of note fields in each event's hash"
            )
        finally:
            await store.close()
            drop_prefix(url, prefix)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(main_async(args.events, args.runs))


if __name__ == "__main__":
    main()
