"""Memory held by slow webhook bodies: N connections each declare 262,144 bytes, send
262,000 of them with no signature header, and stall. Prints the serve process's resident
memory before, once every connection is in, and some seconds later.

    .venv/bin/python bench/slow_bodies.py [--connections 400] [--code DIR]

``--code`` runs the hub of another checkout (its ``hub`` package is imported from there),
to compare before and after a change.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    ROOT,
    drop_prefix,
    free_port,
    hub_config,
    new_prefix,
    redis_url,
    start,
    stop,
    wait_listening,
)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def stall(port: int, sent: asyncio.Event, count: list[int], total: int) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            b"POST /hooks/calendly HTTP/1.1\r\nHost: hub\r\nContent-Length: 262144\r\n"
            b"Content-Type: application/json\r\n\r\n" + b"x" * 262_000
        )
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        count[0] += 1
        if count[0] == total:
            sent.set()
        with contextlib.suppress(ConnectionError, TimeoutError):
            line = await asyncio.wait_for(reader.readline(), 120)
            return line.decode(errors="replace").split(" ")[1] if line else "closed"
        return "no answer"
    finally:
        writer.close()


async def measure(port: int, pid: int, connections: int, hold: float) -> dict[str, object]:
    before = rss_mib(pid)
    sent, count = asyncio.Event(), [0]
    tasks = [asyncio.create_task(stall(port, sent, count, connections)) for _ in range(connections)]
    await sent.wait()
    loaded = rss_mib(pid)
    await asyncio.sleep(hold)  # a benchmark: the point is what stays held over time
    later = rss_mib(pid)
    for task in tasks:
        task.cancel()
    answers: dict[str, int] = {}
    for result in await asyncio.gather(*tasks, return_exceptions=True):
        key = result if isinstance(result, str) else "pending"
        answers[key] = answers.get(key, 0) + 1
    return {
        "connections": connections,
        "rss_before_mib": round(before, 1),
        "rss_all_sent_mib": round(loaded, 1),
        f"rss_after_{hold:g}s_mib": round(later, 1),
        "held_mib": round(later - before, 1),
        "answers": answers,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", type=int, default=400)
    parser.add_argument("--hold", type=float, default=15.0)
    parser.add_argument("--code", type=Path, default=ROOT)
    args = parser.parse_args()
    with redis_url() as url:
        prefix = new_prefix("slow")
        port = free_port()
        config = json.loads(hub_config(url, prefix, port=port, sink="http://127.0.0.1:9"))
        config["server"]["max_body"] = "256KiB"
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "hub.yaml"
            path.write_text(json.dumps(config))
            command = [
                sys.executable,
                "-c",
                "import sys; sys.path.insert(0, sys.argv[1]); "
                "from hub.cli import main; sys.exit(main(sys.argv[2:]))",
                str(args.code.resolve()),
                "serve",
                "--no-worker",
                "--config",
                str(path),
            ]
            process = start(command)
            try:
                wait_listening(port)
                time.sleep(1)  # let it settle before the first reading
                result = asyncio.run(measure(port, process.pid, args.connections, args.hold))
            finally:
                stop(process)
                drop_prefix(url, prefix)
    result["code"] = str(args.code)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
