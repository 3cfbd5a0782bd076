"""Redis's cost per webhook of the store's Lua scripts, and their redis.calls, for the
scripts of this checkout and those of another revision, in the same run.

Each webhook goes through the store as the worker drives it: ACCEPT with a hand-over,
BOOK, the dispatch's FINISH (a note, two Inxmail deliveries with one ordering key, the
first handed over), the first delivery's FINISH (the second handed over), the second's.
Then, without hand-overs: ACCEPT, and CLAIM of 8 at a time; and what costs little each
but comes often: an ACCEPT of a duplicate, a CLAIM with nothing due. Eight webhooks go
through each step together, after 300 earlier ones (the indexes hold days of them).

It starts its own server (``--server``, default redis-server) and reads, per step, the
server's time in EVALSHA and in the commands the scripts call (``INFO commandstats``) and
its CPU (``INFO cpu``): the least of ``--rounds`` rounds, the two sets of scripts taking
turns. The machine's noise moves these; ``--callgrind`` counts instead the instructions
the server executes in scripts, under valgrind (slow, and exact from run to run).

    python bench/script_cost.py [--reference main] [--webhooks 96] [--rounds 5]
                                [--server valkey-server] [--callgrind]
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from types import ModuleType

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, free_port, run, table

sys.path.insert(0, str(ROOT))

import redis
import redis.asyncio as aioredis

from hub.store import Attempt, EndpointPolicy, Handoff, NewJob
from hub.store.redis import RedisStore, _Batch
from hub.store.views import EventNote

BODY = b'{"event":"invitee.created","payload":' + b'"x"' * 700 + b"}"
STEPS = [
    "accept",
    "book",
    "finish dispatch",
    "finish delivery 1",
    "finish delivery 2",
    "accept, no hand-over",
    "claim 8",
    "accept duplicate",
    "claim, nothing due",
]
WEBHOOK = STEPS[:5]
BATCHES = {
    "_accepts": "ACCEPT",
    "_claim": "CLAIM",
    "_finishes": "FINISH",
    "_book": "BOOK",
}


def inside(command: str) -> bool:
    """A command the scripts call (not one this benchmark's clients send)."""
    return command not in ("evalsha", "info", "hello", "ping") and not command.startswith(
        ("script|", "client|")
    )


def scripts(revision: str | None) -> ModuleType:
    """hub/store/lua.py of a git revision, or of this checkout."""
    path = ROOT / "hub/store/lua.py"
    if revision:
        text = subprocess.run(
            ["git", "show", f"{revision}:hub/store/lua.py"],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        path = Path(tempfile.mkdtemp(prefix="script-cost-")) / "lua.py"
        path.write_text(text)
    spec = importlib.util.spec_from_file_location(f"lua_{revision or 'here'}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def store(url: str, lua: ModuleType, prefix: str) -> RedisStore:
    client = aioredis.Redis.from_url(url)
    made = RedisStore(
        client, prefix=prefix, endpoints={"inxmail": EndpointPolicy(concurrency=1000)}
    )
    for attribute, name in BATCHES.items():
        script = client.register_script(getattr(lua, name))
        setattr(made, attribute, _Batch(client, script, None, made._sender))
    return made


class Server:
    def __init__(self, binary: str, callgrind: bool) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="script-cost-"))
        command = [binary, "--port", str(self.port), "--save", "", "--appendonly", "no"]
        command += ["--dir", str(self.dir)]
        if callgrind:
            command = [
                "valgrind",
                "--tool=callgrind",
                "--toggle-collect=evalGenericCommand",
                f"--callgrind-out-file={self.dir}/callgrind.out.%p",
                *command,
            ]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 60
        while True:
            try:
                self.client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(60)
        shutil.rmtree(self.dir, ignore_errors=True)


class Meter:
    """What the server spent per step: commandstats, CPU, or callgrind's dumps."""

    def __init__(self, server: Server, callgrind: bool) -> None:
        self.server, self.callgrind = server, callgrind
        self.label = ""
        self.calls: Counter[tuple[str, str]] = Counter()  # (step, command) -> calls
        self.usec: Counter[tuple[str, str]] = Counter()
        self.cpu: Counter[str] = Counter()
        self.last = self._read()

    def _read(self) -> tuple[dict[str, tuple[int, int]], float]:
        info = self.server.client.info("commandstats")
        stats = {
            k.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"])) for k, v in info.items()
        }
        cpu = self.server.client.info("cpu")
        return stats, float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])

    def start(self, label: str) -> None:
        self.label = label
        if self.callgrind:
            self._dump("skip")
        self.last = self._read()

    def _dump(self, name: str) -> None:
        pid = str(self.server.process.pid)
        subprocess.run(["callgrind_control", "-d", name, pid], check=True, capture_output=True)

    def mark(self, step: str) -> None:
        if self.callgrind:
            self._dump(re.sub(r"\W", "_", f"{self.label}.{step}"))
        stats, cpu = self._read()
        for command, (calls, usec) in stats.items():
            before = self.last[0].get(command, (0, 0))
            self.calls[step, command] += calls - before[0]
            self.usec[step, command] += usec - before[1]
        self.cpu[step] += cpu - self.last[1]
        self.last = self._read()

    def instructions(self) -> Counter[str]:
        """Instructions in scripts per dump name, summed over the dumps."""
        time.sleep(1)
        found: Counter[str] = Counter()
        for path in glob.glob(f"{self.server.dir}/callgrind.out.*"):
            name = None
            with open(path, errors="replace") as lines:
                for line in lines:
                    if line.startswith("desc: Trigger: dump "):
                        name = line.split("dump ", 1)[1].strip()
                    elif line.startswith("summary:") and name:
                        found[name] += int(line.split()[1])
        return found


async def webhooks(made: RedisStore, numbers: range, tag: str, meter: Meter) -> None:
    """Eight webhooks (``numbers``) through each step together."""
    now = time.time()
    accepted = []
    for i in numbers:
        accepted.append(
            await made.accept(
                "calendly", f"{tag}-d{i}", BODY, now, f"{tag}-e{i}", f"{tag}-j{i}",
                order_key=f"calendly|{tag}-b{i}", handoff=Handoff(1, 3600),
            )
        )  # fmt: skip
    meter.mark("accept")
    for i in numbers:
        snapshot = {"uid": f"{tag}-b{i}", "end": "2030-01-01T10:00:00+00:00", "x": "y" * 300}
        refs = [f"{tag}-r{i}a", f"{tag}-r{i}b"]
        await made.record_booking(f"{tag}-b{i}", f"{tag}-e{i}", snapshot, True, refs, now)
    meter.mark("book")
    firsts = []
    for i, result in zip(numbers, accepted, strict=True):
        job = result.job
        assert job is not None, "the dispatch was not handed over"
        spawn = [
            NewJob(
                id=f"{tag}-m{i}-{n}", kind="deliver",
                payload={"route": "r", "event": {"a": "b" * 400}, "message": {"n": n}},
                due=now, destination="inxmail", event_id=job.event_id,
                order_key=f"inxmail|{tag}-b{i}", signature=f"sig{n}",
            )
            for n in range(2)
        ]  # fmt: skip
        note = EventNote(["booking.created"], f"{tag}-b{i}", f"a{i}@b.c", "invitee.created")
        attempt = Attempt(job.attempt, now, 12.0, "done", 200)
        recorded = await made.complete(job, attempt, now, spawn, None, [], note, Handoff(3, 3600))
        assert recorded.kept and len(recorded.jobs) == 1, recorded
        firsts.append(recorded.jobs[0])
    meter.mark("finish dispatch")
    seconds = []
    for job in firsts:
        attempt = Attempt(job.attempt, now, 20.0, "done", 200, None, "ok")
        recorded = await made.complete(job, attempt, now, [], "ok", [], None, Handoff(1, 3600))
        assert recorded.kept and len(recorded.jobs) == 1, recorded
        seconds.append(recorded.jobs[0])
    meter.mark("finish delivery 1")
    for job in seconds:
        attempt = Attempt(job.attempt, now, 20.0, "done", 200, None, "ok")
        recorded = await made.complete(job, attempt, now, [], "ok", [], None, Handoff(1, 3600))
        assert recorded.kept and not recorded.jobs, recorded
    meter.mark("finish delivery 2")
    for i in numbers:
        await made.accept(
            "calendly", f"{tag}-c{i}", BODY, now, f"{tag}-ce{i}", f"{tag}-cj{i}",
            order_key=f"calendly|{tag}-cb{i}",
        )  # fmt: skip
    meter.mark("accept, no hand-over")
    claimed = 0
    while claimed < len(numbers):
        jobs = await made.claim(now, 3600, 8)
        assert jobs
        claimed += len(jobs)
    meter.mark("claim 8")
    for i in numbers:
        again = await made.accept("calendly", f"{tag}-d{i}", BODY, now, "x", "y", "z")
        assert again.duplicate
    meter.mark("accept duplicate")
    for _ in numbers:
        assert not await made.claim(now, 3600, 8)
    meter.mark("claim, nothing due")


async def measure(args: argparse.Namespace) -> None:
    sides = {"before": scripts(args.reference), "after": scripts(None)}
    server = Server(args.server, args.callgrind)
    meters = {side: Meter(server, args.callgrind) for side in sides}
    rounds = 1 if args.callgrind else args.rounds
    per_round: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
    try:
        for n in range(rounds):
            order = list(sides) if n % 2 == 0 else list(sides)[::-1]
            for side in order:
                made = store(server.url, sides[side], f"{side}{n}")
                earlier = Meter(server, False)
                for start in range(0, args.earlier, 8):
                    await webhooks(made, range(start, start + 8), "seed", earlier)
                meter = meters[side]
                meter.start(side)
                before_usec, before_cpu = Counter(meter.usec), Counter(meter.cpu)
                for start in range(0, args.webhooks, 8):
                    await webhooks(made, range(start, start + 8), "m", meter)
                await made.close()
                per_round[side].append(
                    {
                        step: (
                            (meter.usec[step, "evalsha"] - before_usec[step, "evalsha"])
                            / args.webhooks,
                            (meter.cpu[step] - before_cpu[step]) * 1e6 / args.webhooks,
                        )
                        for step in STEPS
                    }
                )
        instructions = meters["before"].instructions() if args.callgrind else Counter()
    finally:
        server.stop()

    def calls(side: str, step: str) -> tuple[float, float]:
        meter = meters[side]
        scripts_run = meter.calls[step, "evalsha"]
        inner = sum(v for (s, c), v in meter.calls.items() if s == step and inside(c))
        return scripts_run / (rounds * args.webhooks), inner / scripts_run if scripts_run else 0

    rows = [["step", "scripts", "redis.calls each", "EVALSHA µs", "CPU µs"]]
    if args.callgrind:
        rows[0][3:] = ["instructions (k)"]
    totals: dict[str, Counter[str]] = {side: Counter() for side in sides}
    for step in STEPS:
        cells = []
        for side in sides:
            each = calls(side, step)
            if args.callgrind:
                key = re.sub(r"\W", "_", f"{side}.{step}")
                cost = [instructions[key] / args.webhooks / 1000]
            else:
                cost = [
                    min(r[step][0] for r in per_round[side]),
                    min(r[step][1] for r in per_round[side]),
                ]
            cells.append((each, cost))
            if step in WEBHOOK:
                totals[side]["calls"] += each[0] * each[1]
                for i, value in enumerate(cost):
                    totals[side][f"cost{i}"] += value
        (b_each, b_cost), (a_each, a_cost) = cells
        rows.append(
            [step, f"{a_each[0]:.2f}", f"{b_each[1]:.1f} → {a_each[1]:.1f}"]
            + [f"{b:.1f} → {a:.1f}" for b, a in zip(b_cost, a_cost, strict=True)]
        )
    print(table(rows))
    print()
    b, a = totals["before"], totals["after"]
    line = f"per webhook (the first five steps): redis.calls {b['calls']:.0f} → {a['calls']:.0f}"
    names = ["instructions (k)"] if args.callgrind else ["EVALSHA µs", "CPU µs"]
    for i, name in enumerate(names):
        before, after = b[f"cost{i}"], a[f"cost{i}"]
        line += f"; {name} {before:.1f} → {after:.1f} ({(after - before) / before:+.0%})"
    print(line)
    print(f"before: {args.reference}, after: this checkout; server: {args.server}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", default="main", help="git revision to compare with")
    parser.add_argument("--webhooks", type=int, default=96, help="measured, per side and round")
    parser.add_argument("--earlier", type=int, default=304, help="webhooks before them")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--server", default="redis-server")
    parser.add_argument("--callgrind", action="store_true")
    args = parser.parse_args()
    args.webhooks -= args.webhooks % 8
    run(measure(args))


if __name__ == "__main__":
    main()
