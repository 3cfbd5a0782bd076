"""End to end: signed Calendly webhooks at a fixed rate into one ``hub serve`` process
(intake and worker together, pinned to one core), two Inxmail events out per webhook at a
receiver; latency from the hub's 202 to each event's arrival.

The sender (this process) keeps the rate open-loop: each request leaves at its own time,
whether or not the earlier ones were answered. Without ``--rate`` it searches for the
highest rate whose p99 (202 → arrival) stays within ``--p99`` ms: up by ``--step`` until a
rate misses, then halving the gap between the last rate that met it and the first that
missed. Each rate also shows the hub's CPU time per webhook by stage (intake, dispatch,
delivery, and the rest: HTTP, store pipelines, claims, the loop), from the process's own
accounting (``HUB_CPU_STAGES=7``, ``hub_cpu_seconds_total`` on /metrics).

On two cores the hub has core 0; the sender, the receiver and a local Redis server share
core 1 (``--redis-anywhere`` leaves Redis where the kernel puts it: then it takes time
from the hub's core, which a deployment with Redis on its own machine does not see).

    python bench/e2e.py [--start 300] [--step 1.25] [--p99 100] [--seconds 8]
    python bench/e2e.py --rate 600 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import redis as redis_client

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    CORES,
    drop_prefix,
    free_port,
    hub_config,
    new_prefix,
    redis_on_core,
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


async def send(
    port: int, rate: int, seconds: int, first: int
) -> tuple[dict[str, float], list[float]]:
    """POST rate x seconds webhooks (bookings ``first``, ``first + 1``, …) at their times;
    return when each was accepted (by invitee URI) and how long each accept took."""
    total = rate * seconds
    now = int(time.time())
    bodies = [signed(first + n, now) for n in range(total)]
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


async def wait_for_arrivals(port: int, expected: int, within: float = 300) -> list[list]:
    """The receiver's arrivals, once ``expected`` in all have come (or the time is up)."""
    async with aiohttp.ClientSession() as http:
        deadline = time.time() + within
        while True:
            async with http.get(f"http://127.0.0.1:{port}/arrivals") as response:
                arrivals = await response.json()
            if len(arrivals) >= expected or time.time() > deadline:
                return arrivals
            await asyncio.sleep(0.25)  # the receiver is another process: look again


async def cpu_seconds(port: int) -> dict[str, float]:
    """The hub's CPU seconds by stage, and its webhooks accepted, from its /metrics."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        text = await response.text()
    found = {
        stage: float(value)
        for stage, value in re.findall(
            r'^hub_cpu_seconds_total\{stage="(\w+)"\} (\S+)$', text, re.M
        )
    }
    accepted = re.search(
        r'^hub_webhooks_total\{outcome="accepted",source="calendly"\} (\S+)$', text, re.M
    )
    found["webhooks"] = float(accepted.group(1)) if accepted else 0.0
    return found


STAGES = ("intake", "dispatch", "delivery", "other")


def process_cpu(pid: int) -> float | None:
    """The kernel's count of a process's CPU seconds (Linux), a check on its own."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Trial:
    rate: int
    webhooks: int
    accept_p99: float
    p50: float
    p99: float
    cpu_us: dict[str, float]  # per webhook, by stage
    round_trips: float  # requests Redis read per webhook (its read events)
    kernel_us: float | None  # per webhook, the kernel's count for the whole process
    target: float  # the p99 it must meet (ms)

    @property
    def met(self) -> bool:
        return self.p99 <= self.target


class Bench:
    """One hub and one receiver, several rates in turn."""

    def __init__(
        self,
        hub_pid: int,
        hub_port: int,
        sink_port: int,
        seconds: int,
        target: float,
        redis: str,
    ) -> None:
        self.hub_pid, self.hub_port, self.sink_port = hub_pid, hub_port, sink_port
        self.redis = redis_client.Redis.from_url(redis)
        self.seconds, self.target = seconds, target
        self.sent = 0  # webhooks sent so far: each trial's bookings are new ones

    def trial(self, rate: int) -> Trial:
        before = run(cpu_seconds(self.hub_port))
        kernel_before = process_cpu(self.hub_pid)
        reads_before = self.redis.info("stats")["total_reads_processed"]
        accepted, accept_ms = run(send(self.hub_port, rate, self.seconds, self.sent))
        self.sent += len(accepted)
        arrivals = run(wait_for_arrivals(self.sink_port, 2 * self.sent))
        after = run(cpu_seconds(self.hub_port))
        kernel_after = process_cpu(self.hub_pid)
        reads = self.redis.info("stats")["total_reads_processed"] - reads_before
        latencies = [(at - accepted[uri]) * 1000 for at, uri in arrivals if uri in accepted]
        if len(latencies) < 2 * len(accepted):
            raise SystemExit(f"{2 * len(accepted) - len(latencies)} events never arrived")
        webhooks = after["webhooks"] - before["webhooks"]
        cpu = {s: (after.get(s, 0) - before.get(s, 0)) / webhooks * 1e6 for s in STAGES}
        kernel = None
        if kernel_before is not None and kernel_after is not None:
            kernel = (kernel_after - kernel_before) / webhooks * 1e6
        return Trial(
            rate,
            len(accepted),
            percentile(accept_ms, 0.99),
            percentile(latencies, 0.5),
            percentile(latencies, 0.99),
            cpu,
            reads / webhooks,
            kernel,
            self.target,
        )


def search(bench: Bench, start_rate: int, step: float, rounds: int) -> list[Trial]:
    """Up by ``step`` until a rate misses the target, then halve the gap ``rounds`` times."""
    trials = [bench.trial(start_rate)]
    report(trials[-1])
    while trials[-1].met:
        trials.append(bench.trial(int(trials[-1].rate * step)))
        report(trials[-1])
    met = [t.rate for t in trials if t.met]
    low, high = (max(met) if met else 0), trials[-1].rate
    for _ in range(rounds):
        middle = (low + high) // 2
        if middle in (low, high):
            break
        trials.append(bench.trial(middle))
        report(trials[-1])
        low, high = (middle, high) if trials[-1].met else (low, middle)
    return trials


def report(trial: Trial) -> None:
    print(
        f"  {trial.rate}/s: p99 {trial.p99:.1f} ms, "
        f"{sum(trial.cpu_us.values()):.0f} µs CPU per webhook, "
        f"{'met' if trial.met else 'missed'}",
        file=sys.stderr,
        flush=True,
    )


@contextlib.contextmanager
def profiled(pid: int, out: Path) -> Iterator[None]:
    """py-spy sampling ``pid`` (native frames off, idle samples left out) while inside."""
    beside = Path(sys.executable).with_name("py-spy")  # the virtualenv's, when not on PATH
    spy = subprocess.Popen(
        [
            str(beside) if beside.exists() else "py-spy",
            "record",
            "--pid",
            str(pid),
            "--format",
            "raw",
            "--rate",
            "250",
            "--output",
            str(out),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(30)


# Frames a stack is charged to, first match from the top of the stack down.
BUCKETS = (
    ("redis socket write", ("sendall", "_send_packed_command", "write (asyncio/selector")),
    ("redis reply parse", ("hiredis", "read_response", "_read_response")),
    ("ICS", ("hub/ics.py",)),
    ("JSON", ("orjson", "json/")),
    ("pydantic", ("pydantic",)),
    ("CEL", ("celpy", "cel")),
    ("logging", ("structlog", "hub/logs.py")),
    ("metrics", ("prometheus_client",)),
    ("aiohttp client", ("aiohttp/client", "aiohttp/connector")),
    ("aiohttp server", ("aiohttp/web_protocol", "aiohttp/web_", "aiohttp/http_")),
    ("redis client", ("redis/asyncio", "redis/")),
    ("store", ("hub/store",)),
    ("worker", ("hub/worker.py",)),
    ("intake", ("hub/intake.py",)),
    ("connectors", ("hub/connectors", "hub_")),
)


def shares(collapsed: Path) -> str:
    """The profile's samples by where their innermost recognised frame is."""
    counts: dict[str, int] = {}
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        total += int(n)
        frames = stack.split(";")[::-1]
        bucket = next(
            (name for frame in frames for name, marks in BUCKETS if any(m in frame for m in marks)),
            "other (the loop, asyncio)",
        )
        counts[bucket] = counts.get(bucket, 0) + int(n)
    rows = [["where", "share of samples"]] + [
        [name, f"{n / total:.1%}"] for name, n in sorted(counts.items(), key=lambda kv: -kv[1])
    ]
    return table(rows) if total else "no samples"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=int, help="one fixed rate instead of the search")
    parser.add_argument("--start", type=int, default=300, help="the search's first rate")
    parser.add_argument("--step", type=float, default=1.25, help="the search's factor up")
    parser.add_argument("--rounds", type=int, default=3, help="halvings after the first miss")
    parser.add_argument("--p99", type=float, default=100.0, help="target, 202 → arrival (ms)")
    parser.add_argument("--seconds", type=int, default=8, help="seconds of load per rate")
    parser.add_argument(
        "--redis-anywhere",
        action="store_true",
        help="leave a local Redis where the kernel puts it (default: on core 1, with the load)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="with --rate: record the hub with py-spy into this file (collapsed stacks) "
        "and print the largest shares of its samples",
    )
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity") and CORES >= 2:
        os.sched_setaffinity(0, {1})  # the sender shares the receiver's core, not the hub's
    workdir = Path(tempfile.mkdtemp(prefix="hub-bench-e2e-"))
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(redis_url())
        if not args.redis_anywhere:
            # Redis takes the load's core, as it would be off the hub's machine in production
            redis_pid = stack.enter_context(redis_on_core(url, 1))
            where = f"on core 1 with the load (pid {redis_pid})" if redis_pid else "unpinned"
            print(f"Redis: {where}", file=sys.stderr, flush=True)
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
            env={"HUB_CPU_STAGES": "7"},  # one job or request in 7 of each stage is metered
            log=workdir / "hub.log",
        )
        try:
            wait_listening(sink_port)
            wait_listening(hub_port)
            bench = Bench(hub.pid, hub_port, sink_port, args.seconds, args.p99, url)
            if args.rate and args.profile:
                with profiled(hub.pid, args.profile):
                    trials = [bench.trial(args.rate)]
                print(shares(args.profile))
            elif args.rate:
                trials = [bench.trial(args.rate)]
            else:
                trials = search(bench, args.start, args.step, args.rounds)
        finally:
            stop(hub)
            stop(sink)
            drop_prefix(url, prefix)
    rows = [
        ["rate/s", "webhooks", "accept p99 ms", "p50 ms", "p99 ms"]
        + [f"{s} µs" for s in STAGES]
        + ["CPU µs/webhook", "kernel's count", "Redis reads/webhook", f"p99 <= {args.p99:g}"]
    ]
    for t in sorted(trials, key=lambda t: t.rate):
        rows.append(
            [str(t.rate), str(t.webhooks), f"{t.accept_p99:.1f}", f"{t.p50:.1f}", f"{t.p99:.1f}"]
            + [f"{t.cpu_us[s]:.0f}" for s in STAGES]
            + [f"{sum(t.cpu_us.values()):.0f}", f"{t.kernel_us or 0:.0f}", f"{t.round_trips:.1f}"]
            + ["yes" if t.met else "no"]
        )
    print(table(rows))
    met = [t for t in trials if t.met]
    best = max(met, key=lambda t: t.rate) if met else None
    cpu = best or trials[0]
    per_stage = ", ".join(f"{s} {cpu.cpu_us[s]:.0f}" for s in STAGES)
    print(f"CPU µs per webhook at {cpu.rate}/s: {per_stage}; total {sum(cpu.cpu_us.values()):.0f}")
    if args.rate:
        verdict = "OK" if trials[0].met else "MISSED"
        print(
            f"end to end at {args.rate}/s: p99 {trials[0].p99:.1f} ms "
            f"(target <= {args.p99:g}) {verdict}"
        )
    else:
        rate = best.rate if best else 0
        verdict = "OK" if rate >= 600 else "MISSED"
        print(
            f"end to end: highest rate with p99 <= {args.p99:g} ms: {rate}/s "
            f"(target >= 600/s) {verdict}"
        )


if __name__ == "__main__":
    main()
