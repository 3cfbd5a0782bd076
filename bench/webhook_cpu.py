"""The hub process's CPU to make a Calendly webhook's events and jobs, and its Inxmail
messages: no Redis, no network, the Python work alone.

Per webhook (created, cancelled, and the new half of a reschedule whose booking is known):
the source's ``normalize`` and the worker's plan (the booking kept, the jobs and time
triggers made), against a store that answers at once. Per message: ``Inxmail.deliver`` of
each job made, its event read back from JSON as the store gives it, up to the bytes of the
body (the HTTP request left out). Every webhook names a new booking and client, as in
production. Each figure is the least of ``--rounds`` rounds of process CPU
(``time.process_time``). It runs the hub of the checkout it is in: to compare two, run a
copy in each.

    python bench/webhook_cpu.py [--webhooks 6000] [--rounds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import gc
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import table  # noqa: E402

import connectors.inxmail  # noqa: E402
import hub  # noqa: E402
from hub.bookings import Bookings  # noqa: E402
from hub.clock import ManualClock  # noqa: E402
from hub.config import parse_config  # noqa: E402
from hub.connector import ConnectorContext, Delivery, DeliveryResult, NormalizeContext  # noqa: E402
from hub.plugins import get_plugin_manager  # noqa: E402
from hub.routing import Router  # noqa: E402
from hub.runtime import build_destinations, build_sources  # noqa: E402
from hub.store import Paired, StoredBooking  # noqa: E402
from hub.worker import Worker  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "calendly"
CONFIG = """
store: {url: "redis://127.0.0.1:1/0", prefix: bench}
server: {ics_secret: "ics-link-secret-0000000", public_url: "https://hub.example.org"}
sources: {calendly: {connector: calendly, signing_key: "bench-signing-key-0000"}}
destinations:
  inxmail:
    connector: inxmail
    api_url: "https://inxmail.example/api-service/v1"
    api_id: bench
    api_secret: "bench-api-secret-0000"
routes:
  - name: all
    on: [booking_confirmed, booking_rescheduled, booking_cancelled]
    send: [{to: inxmail}]
  - {name: reminder, on: before_meeting_starts, offset: 24h, send: [{to: inxmail}]}
"""


class Store:
    """What normalize and the plan ask of the store, answered at once."""

    known: StoredBooking | None = None

    async def record_booking(self, uid, event_id, snapshot, new_version, refs, now, at=0.0):
        orjson.dumps(snapshot)  # as a store writes it
        return (1 if new_version else 0), False

    async def sent_signatures(self, event_id: str) -> set[str]:
        return set()

    async def booking_by_ref(self, ref: str) -> StoredBooking | None:
        return self.known

    async def pair(self, key, role, event, alone_ok, fallback, now, half=""):
        orjson.dumps(event)
        return Paired("alone" if alone_ok else "wait")


class Job:
    def __init__(self, event_id: str) -> None:
        self.id = "job_" + event_id[4:]
        self.event_id = event_id
        self.payload: dict[str, Any] = {}


class Quiet:
    def info(self, *args: Any, **kwargs: Any) -> None:
        pass


def webhooks() -> dict[str, tuple[bytes, bool]]:
    """Each kind's body, and whether its booking is known already."""
    created = orjson.loads((FIXTURES / "invitee_created.json").read_bytes())
    moved = copy.deepcopy(created)
    invitee = moved["payload"]
    invitee.update(uri=invitee["uri"] + "-new", old_invitee=invitee["uri"])
    invitee["scheduled_event"].update(
        start_time="2026-12-10T14:00:00.000000Z", end_time="2026-12-10T14:45:00.000000Z"
    )
    return {
        "created": (orjson.dumps(created), False),
        "cancelled": ((FIXTURES / "invitee_canceled.json").read_bytes(), False),
        "rescheduled": (orjson.dumps(moved), True),
    }


def least_per_item(rounds: list[tuple[float, int]]) -> float:
    return min(cpu / count for cpu, count in rounds) * 1e6


async def measure(count: int, rounds: int) -> list[list[str]]:
    pm = get_plugin_manager()
    config = parse_config(CONFIG, pm, environ={})
    clock = ManualClock(datetime(2026, 11, 20, 8, 15, 45, tzinfo=UTC))
    store = Store()
    destinations = build_destinations(config, pm, ConnectorContext(http=None, clock=clock))  # type: ignore[arg-type]
    calendly = build_sources(config, pm)["calendly"]
    worker = Worker(
        store=store,  # type: ignore[arg-type]
        sources={"calendly": calendly},
        destinations=destinations,
        router=Router.from_config(config),
        config=config.worker,
        clock=clock,
        ics_links=config.server.ics_links(),
    )
    inxmail = destinations["inxmail"]

    async def sent(session: Any, url: str, body: dict[str, Any], **kwargs: Any) -> DeliveryResult:
        orjson.dumps(body)  # the body's bytes, as post_json makes them
        return DeliveryResult(status=202)

    connectors.inxmail.post_json = sent  # type: ignore[assignment]

    async def webhook(body: bytes, i: int) -> list[Any]:
        payload = orjson.loads(body)  # as the worker reads it
        invitee = payload["payload"]
        for name in ("uri", "old_invitee"):
            if invitee.get(name):
                invitee[name] = f"{invitee[name]}-{i}"
        invitee["email"] = f"client{i}@example.org"
        event_id = f"evt_{i:026d}"
        context = NormalizeContext(
            "calendly",
            event_id,
            clock.datetime(),
            Bookings(store, clock.now()),  # type: ignore[arg-type]
        )
        events = await calendly.normalize(payload, context)
        plan = await worker._plan(Job(event_id), events, Quiet())  # type: ignore[arg-type]
        return plan.spawn

    # the known booking of a reschedule's new half
    [known] = await calendly.normalize(
        orjson.loads(webhooks()["created"][0]),
        NormalizeContext("calendly", "evt_0", clock.datetime(), Bookings(store, clock.now())),  # type: ignore[arg-type]
    )
    snapshot = orjson.loads(orjson.dumps(known.booking.model_dump(mode="json")))

    rows = []
    for kind, (body, booked) in webhooks().items():
        store.known = StoredBooking(snapshot, 0) if booked else None
        jobs = [j for i in range(count) for j in await webhook(body, i) if j.kind == "deliver"]
        stored = [(j.id, orjson.dumps(j.payload)) for j in jobs]  # what the store keeps
        del jobs
        gc.collect()
        gc.freeze()  # what the run keeps is not walked by the collector, as in the hub
        per_round = count // rounds
        planned = []
        for r in range(rounds):
            first = count + r * per_round  # bookings and clients not seen before
            started = time.process_time()
            for i in range(first, first + per_round):
                await webhook(body, i)
            planned.append((time.process_time() - started, per_round))
        built = []
        per_round = len(stored) // rounds
        for r in range(rounds):
            deliveries = []
            for job_id, data in stored[r * per_round : (r + 1) * per_round]:
                payload = orjson.loads(data)  # as the store gives it back
                deliveries.append(
                    Delivery(job_id, 1, payload["route"], payload["event"], payload["message"])
                )
            started = time.process_time()
            for delivery in deliveries:
                await inxmail.deliver(delivery)
            built.append((time.process_time() - started, per_round))
        gc.unfreeze()
        rows.append(
            [
                kind,
                f"{least_per_item(planned):.1f}",
                f"{len(stored) / count:g}",
                f"{least_per_item(built):.1f}",
            ]
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n\n")[0])
    parser.add_argument("--webhooks", type=int, default=6000, help="per kind")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    print(f"hub from {Path(hub.__file__).parent.parent}")
    rows = asyncio.run(measure(args.webhooks, args.rounds))
    header = ["webhook", "normalize + plan µs/webhook", "messages", "Inxmail µs/message"]
    print(table([header, *rows]))


if __name__ == "__main__":
    main()
