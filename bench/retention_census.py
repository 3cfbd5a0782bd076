"""What stays in Redis after N webhooks: keys without a TTL, by kind, and keys holding
personal data in plain text (with ``store.encryption_keys`` set, the target is none).

N signed Calendly bookings go into ``hub serve`` (intake and worker); a third of the
deliveries are refused (400), so dead letters are made too. Once the queue is empty, every
key under the run's prefix is looked at.

    .venv/bin/python bench/retention_census.py [--webhooks 10000] [--code DIR]

``--code`` runs the hub of another checkout, to compare before and after a change.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp
import redis
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    ROOT,
    drop_prefix,
    free_port,
    hub_config,
    new_prefix,
    redis_url,
    signed,
    start,
    stop,
    wait_listening,
)
from hub.crypto import new_key

# No Fernet token holds a space, "@" or ".": these cannot match ciphertext by chance
PII = (b"Mara Keller", b"mara.keller", b"@example.org")
_ID = re.compile(
    r"(evt|job)_[0-9A-Z]{26}(\.[0-9]+)?|[0-9a-f]{8}-[0-9a-f-]{27}|[0-9a-f]{32,64}|B[0-9]{9}"
)


async def receiver(port: int) -> web.AppRunner:
    count = [0]

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        count[0] += 1
        return web.Response(status=400 if count[0] % 3 == 0 else 202)

    app = web.Application()
    app.router.add_post("/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def post_all(port: int, count: int) -> Counter[int]:
    now = int(time.time())
    statuses: Counter[int] = Counter()
    limit = asyncio.Semaphore(64)
    async with aiohttp.ClientSession() as http:

        async def one(n: int) -> None:
            signature, body = signed(n, now)
            async with (
                limit,
                http.post(
                    f"http://127.0.0.1:{port}/hooks/calendly",
                    data=body,
                    headers={"Calendly-Webhook-Signature": signature},
                ) as response,
            ):
                statuses[response.status] += 1

        await asyncio.gather(*(one(n) for n in range(count)))
    return statuses


def census(client: redis.Redis, prefix: str) -> dict[str, object]:
    persistent: Counter[str] = Counter()
    plaintext: Counter[str] = Counter()
    total = 0
    for key in client.scan_iter(f"{prefix}:*", count=1000):
        total += 1
        name = _ID.sub("*", key.decode().removeprefix(prefix + ":"))
        if client.ttl(key) == -1:
            persistent[name] += 1
        kind = client.type(key)
        values = [key]
        if kind == b"hash":
            values += [v for pair in client.hgetall(key).items() for v in pair]
        elif kind == b"list":
            values += client.lrange(key, 0, -1)
        elif kind == b"string":
            values.append(client.get(key))
        elif kind in (b"zset", b"set"):
            values += client.zrange(key, 0, -1) if kind == b"zset" else client.smembers(key)
        if any(p in v for v in values for p in PII):
            plaintext[name] += 1
    return {
        "keys": total,
        "keys_without_ttl": sum(persistent.values()),
        "without_ttl_by_kind": dict(persistent.most_common()),
        "keys_with_plaintext_pii": sum(plaintext.values()),
        "plaintext_by_kind": dict(plaintext.most_common()),
    }


async def wait_idle(client: redis.Redis, prefix: str, within: float = 600) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        busy = client.zcard(f"{prefix}:q:due") + client.zcard(f"{prefix}:q:inflight")
        if not busy:
            return
        await asyncio.sleep(0.2)  # a benchmark waits for the worker process
    raise RuntimeError("the queue did not drain")


async def run(url: str, count: int, code: str) -> dict[str, object]:
    prefix = new_prefix("census")
    port, sink_port = free_port(), free_port()
    config = json.loads(hub_config(url, prefix, port=port, sink=f"http://127.0.0.1:{sink_port}"))
    config["store"]["encryption_keys"] = [new_key()]
    config["destinations"]["inxmail"]["retry"] = {"attempts": 1}
    runner = await receiver(sink_port)
    client = redis.Redis.from_url(url)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hub.yaml"
        path.write_text(json.dumps(config))
        process = start(
            [
                sys.executable,
                "-c",
                "import sys; sys.path.insert(0, sys.argv[1]); "
                "from hub.cli import main; sys.exit(main(sys.argv[2:]))",
                code,
                "serve",
                "--config",
                str(path),
            ]
        )
        try:
            wait_listening(port)
            statuses = await post_all(port, count)
            await wait_idle(client, prefix)
            result = {"webhooks": count, "statuses": dict(statuses), **census(client, prefix)}
        finally:
            stop(process)
            await runner.cleanup()
            drop_prefix(url, prefix)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--webhooks", type=int, default=10_000)
    parser.add_argument("--code", type=Path, default=ROOT)
    args = parser.parse_args()
    with redis_url() as url:
        result = asyncio.run(run(url, args.webhooks, str(args.code.resolve())))
        print(json.dumps({**result, "code": str(args.code)}, indent=2))


if __name__ == "__main__":
    main()
