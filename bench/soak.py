"""Soak: many bookings through a flaky destination while workers are killed.

Each booking is confirmed and then cancelled: two webhooks, four Inxmail messages that must
arrive in order. The destination fails 30 % of attempts at random; the worker process is
killed with SIGKILL several times and replaced. At the end every message must have been
delivered, each booking's messages in order, each message under one idempotency id across
its attempts, and duplicates only where a kill interrupted an attempt.

    python bench/soak.py --bookings 1000 --kills 5     # prints a report

``tests/test_soak.py`` runs a small one in the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis
import yaml
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from connectors.calendly import sign  # noqa: E402
from hub.app import create_app  # noqa: E402
from hub.config import parse_config  # noqa: E402
from hub.logs import configure_logging  # noqa: E402
from hub.plugins import get_plugin_manager  # noqa: E402

KEY = "soak-signing-key"
ENV = {"CALENDLY_SIGNING_KEY": KEY, "INXMAIL_API_ID": "soak", "INXMAIL_API_SECRET": "soak"}
ORDER = (
    "calenso.booking.inform-customer",
    "calenso.booking.inform-partner",
    "calenso.booking.cancel.inform-customer",
    "calenso.booking.cancel.inform-partner",
)
FIXTURES = ROOT / "tests" / "fixtures" / "calendly"


@dataclass
class Report:
    bookings: int
    kills: int
    seconds: float = 0.0
    attempts: int = 0
    failures_injected: int = 0
    delivered: int = 0  # messages with at least one 2xx
    duplicates: int = 0  # 2xx answers beyond the first, per message
    order_violations: list[str] = field(default_factory=list)
    id_violations: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    in_flight_after: int = -1  # the destination's in-flight count once all is done

    @property
    def expected(self) -> int:
        return self.bookings * len(ORDER)

    def lines(self, concurrency: int) -> list[str]:
        return [
            f"bookings              {self.bookings}",
            f"messages expected     {self.expected}",
            f"messages delivered    {self.delivered}",
            f"attempts              {self.attempts}",
            f"failures injected     {self.failures_injected} "
            f"({self.failures_injected / max(self.attempts, 1):.0%} of attempts)",
            f"workers killed        {self.kills}",
            f"duplicate deliveries  {self.duplicates} (bound: kills x concurrency = "
            f"{self.kills * concurrency})",
            f"order violations      {len(self.order_violations)}",
            f"idempotency-id splits {len(self.id_violations)}",
            f"in flight at the end  {self.in_flight_after}",
            f"wall time             {self.seconds:.1f} s "
            f"({self.expected / max(self.seconds, 1e-9):.0f} messages/s)",
        ]


def _webhooks(n: int) -> tuple[bytes, bytes]:
    created = json.loads((FIXTURES / "invitee_created.json").read_text())
    canceled = json.loads((FIXTURES / "invitee_canceled.json").read_text())
    for payload in (created, canceled):
        invitee = payload["payload"]
        invitee["uri"] = invitee["uri"].replace("INV0000000042", f"SOAK{n:08d}")
        invitee["email"] = f"soak{n}@example.org"
    return json.dumps(created).encode(), json.dumps(canceled).encode()


def _config(redis_url: str, prefix: str, sink: str, concurrency: int) -> dict[str, Any]:
    return {
        "store": {"url": redis_url, "prefix": prefix},
        "worker": {
            "concurrency": concurrency,
            "lease": "2s",
            "poll_interval": "20ms",
            "shutdown_grace": "5s",
        },
        "log": {"level": "warning", "format": "json"},
        "sources": {
            "calendly": {"connector": "calendly", "signing_key": "${CALENDLY_SIGNING_KEY}"}
        },
        "destinations": {
            "inxmail": {
                "connector": "inxmail",
                "api_url": f"{sink}/v1",
                "api_id": "${INXMAIL_API_ID}",
                "api_secret": "${INXMAIL_API_SECRET}",
                "timeout": "1500ms",
                "retry": {
                    "schedule": ["20ms", "50ms", "100ms", "200ms"],
                    "attempts": 40,
                    "jitter": 0.2,
                },
                # gates on, so their bookkeeping is exercised while workers die
                "concurrency": max(concurrency // 2, 1),
                "circuit": {
                    "window": "1s",
                    "failure_ratio": 0.7,
                    "min_requests": 20,
                    "open_for": "200ms",
                },
            }
        },
        "routes": [
            {
                "name": "all",
                "on": ["booking_confirmed", "booking_cancelled"],
                "send": [{"to": "inxmail"}],
            }
        ],
    }


class Sink:
    """The flaky destination: answers 503 to a share of attempts, records every one."""

    def __init__(self, failure_rate: float, seed: int) -> None:
        self.rng = random.Random(seed)
        self.failure_rate = failure_rate
        self.log: list[tuple[str, str, str, int]] = []  # (email, event, transaction id, status)
        self.ok = 0
        self.delivered: set[tuple[str, str]] = set()
        self.changed = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        status = 503 if self.rng.random() < self.failure_rate else 202
        email = body["payload"]["customer"]["email"]
        self.log.append((email, body["event"], body["transactionId"], status))
        if status == 202:
            self.ok += 1
            self.delivered.add((email, body["event"]))
            self.changed.set()
        return web.json_response({}, status=status)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _start_worker(config_path: Path, log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "hub",
            "worker",
            "--config",
            str(config_path),
            stdout=out,
            stderr=out,
            env={**os.environ, **ENV},
            cwd=str(ROOT),
        )


def _check(sink: Sink, report: Report) -> None:
    per_message: dict[tuple[str, str], list[tuple[str, int]]] = defaultdict(list)
    per_booking: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for email, event, txid, status in sink.log:
        per_message[(email, event)].append((txid, status))
        per_booking[email].append((event, status))
    report.attempts = len(sink.log)
    report.failures_injected = sum(1 for *_, status in sink.log if status != 202)
    for n in range(report.bookings):
        email = f"soak{n}@example.org"
        for event in ORDER:
            tries = per_message.get((email, event), [])
            oks = sum(1 for _, status in tries if status == 202)
            if oks == 0:
                report.missing.append(f"{email} {event}")
                continue
            report.delivered += 1
            report.duplicates += oks - 1
            if len({txid for txid, _ in tries}) != 1:
                report.id_violations.append(f"{email} {event}")
        # no message is attempted before the one ahead of it has been delivered
        done: set[str] = set()
        for event, status in per_booking[email]:
            position = ORDER.index(event)
            if any(earlier not in done for earlier in ORDER[:position]):
                report.order_violations.append(f"{email}: {event} before its predecessors")
                break
            if status == 202:
                done.add(event)


async def run_soak(
    *,
    bookings: int,
    kills: int,
    redis_url: str,
    concurrency: int = 16,
    failure_rate: float = 0.3,
    seed: int = 1,
    workdir: Path | None = None,
    within: float = 600,
) -> Report:
    workdir = workdir or Path(tempfile.mkdtemp(prefix="hub-soak-"))
    prefix = f"soak:{uuid.uuid4().hex[:10]}"
    report = Report(bookings=bookings, kills=0)
    sink = Sink(failure_rate, seed)
    sink_app = web.Application()
    sink_app.router.add_post("/v1/events", sink.handle)
    sink_runner = web.AppRunner(sink_app, access_log=None)
    await sink_runner.setup()
    sink_port = _free_port()
    await web.TCPSite(sink_runner, "127.0.0.1", sink_port).start()

    data = _config(redis_url, prefix, f"http://127.0.0.1:{sink_port}", concurrency)
    config_path = workdir / "hub.yaml"
    config_path.write_text(yaml.safe_dump(data))
    config = parse_config(config_path.read_text(), get_plugin_manager(), environ=ENV)
    hub_runner = web.AppRunner(create_app(config), access_log=None)
    await hub_runner.setup()
    hub_port = _free_port()
    await web.TCPSite(hub_runner, "127.0.0.1", hub_port).start()

    started = time.perf_counter()
    worker = await _start_worker(config_path, workdir / "workers.log")
    try:
        async with aiohttp.ClientSession() as http:
            for n in range(bookings):
                for body in _webhooks(n):
                    header = sign(KEY, int(time.time()), body)
                    async with http.post(
                        f"http://127.0.0.1:{hub_port}/hooks/calendly",
                        data=body,
                        headers={"Calendly-Webhook-Signature": header},
                    ) as response:
                        assert response.status == 202, await response.text()
        kill_at = [report.expected * (k + 1) // (kills + 1) for k in range(kills)]
        async with asyncio.timeout(within):
            while len(sink.delivered) < report.expected:
                sink.changed.clear()
                if kill_at and sink.ok >= kill_at[0]:
                    kill_at.pop(0)
                    worker.send_signal(signal.SIGKILL)
                    await worker.wait()
                    report.kills += 1
                    worker = await _start_worker(config_path, workdir / "workers.log")
                await sink.changed.wait()
            # Attempts cut short by a kill come back when their lease runs out: wait for
            # the queue to be empty (those are the duplicates), then stop the worker.
            queue = aioredis.Redis.from_url(redis_url)
            try:
                # another process's work, seen only through Redis: look again shortly
                while await queue.zcard(f"{prefix}:q:due") + await queue.zcard(  # noqa: ASYNC110
                    f"{prefix}:q:inflight"
                ):
                    await asyncio.sleep(0.05)
            finally:
                await queue.aclose()
        worker.send_signal(signal.SIGTERM)
        await asyncio.wait_for(worker.wait(), 30)
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
        report.seconds = time.perf_counter() - started
        await hub_runner.cleanup()
        await sink_runner.cleanup()
        client = aioredis.Redis.from_url(redis_url)
        report.in_flight_after = int(await client.hget(f"{prefix}:dest:inxmail", "inflight") or 0)
        keys = [k async for k in client.scan_iter(f"{prefix}:*", count=1000)]
        for i in range(0, len(keys), 500):
            await client.delete(*keys[i : i + 500])
        await client.aclose()
    _check(sink, report)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bookings", type=int, default=1000)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--failure-rate", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--redis", default=os.environ.get("HUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    args = parser.parse_args()
    configure_logging("warning", "json")
    report = asyncio.run(
        run_soak(
            bookings=args.bookings,
            kills=args.kills,
            redis_url=args.redis,
            concurrency=args.concurrency,
            failure_rate=args.failure_rate,
            seed=args.seed,
        )
    )
    print("\n".join(report.lines(args.concurrency)))
    problems = report.missing + report.order_violations + report.id_violations
    if report.in_flight_after != 0:
        problems.append(f"{report.in_flight_after} attempts still counted in flight")
    if problems or report.duplicates > report.kills * args.concurrency:
        print("FAILED:", *problems[:20], sep="\n  ")
        sys.exit(1)


if __name__ == "__main__":
    main()
