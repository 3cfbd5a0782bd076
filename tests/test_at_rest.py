"""With encryption keys set, no personal data sits in Redis in plain text: attempt records
(response excerpts) and dead-letter reasons included. The read side still sees it."""

from __future__ import annotations

import redis.asyncio as aioredis
from aiohttp import web

from hub.crypto import new_key
from hub.testing import REDIS_URL

# no Fernet token holds a space or a dot: these cannot match ciphertext by chance
PII = (b"Mara Keller", b"mara.keller", b"example.org")


async def plaintext_keys(prefix: str) -> list[str]:
    """Keys under ``prefix`` whose name or any value shows personal data in plain text."""
    client = aioredis.Redis.from_url(REDIS_URL)
    found = []
    try:
        async for key in client.scan_iter(f"{prefix}:*", count=500):
            kind = await client.type(key)
            values: list[bytes] = [key]
            if kind == b"hash":
                for field, value in (await client.hgetall(key)).items():
                    values += [field, value]
            elif kind == b"list":
                values += await client.lrange(key, 0, -1)
            elif kind == b"string":
                values.append(await client.get(key))
            elif kind == b"zset":
                values += await client.zrange(key, 0, -1)
            elif kind == b"set":
                values += list(await client.smembers(key))
            if any(p in v for v in values for p in PII):
                found.append(key.decode())
    finally:
        await client.aclose()
    return found


async def test_attempts_and_dead_letter_reasons_are_sealed(start_hub, aiohttp_server) -> None:
    async def echo(request: web.Request) -> web.Response:  # a receiver that quotes us back
        return web.Response(status=422, body=await request.read())

    app = web.Application()
    app.router.add_post("/in", echo)
    receiver = await aiohttp_server(app)
    hub = await start_hub(
        store__encryption_keys=[new_key()],
        destinations__hooks={
            "connector": "webhook",
            "url": str(receiver.make_url("/in")),
            "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
        },
        routes=[{"name": "all", "on": ["booking_confirmed"], "send": [{"to": "hooks"}]}],
    )
    await hub.accept("calendly/invitee_created.json")
    await hub.worker.drain()
    [dead] = await hub.store.dead_letters()
    assert "Mara Keller" in dead.attempts[-1]["response"]  # the read side sees it
    job = await hub.store.get_job(dead.id)
    await hub.store.replay(dead.id, hub.clock.now())
    [claimed] = await hub.store.claim(hub.clock.now(), 30, 10)
    assert claimed.id == job.id
    from hub.store import Attempt

    reason = "receiver refused mara.keller@example.org"
    await hub.store.bury(claimed, Attempt(2, hub.clock.now(), 0.1, "dead"), hub.clock.now(), reason)
    [again] = await hub.store.dead_letters()
    assert again.reason == reason
    assert await plaintext_keys(hub.prefix) == []
