"""Nothing personal is kept forever: bookings expire after their end plus retention (and
their last time trigger), dead letters after store.dead_letter_retention."""

from __future__ import annotations

import redis.asyncio as aioredis

from hub.testing import REDIS_URL
from tests.conftest import keys_under

DAY = 86400


async def _ttls(prefix: str, part: str) -> dict[str, int]:
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        keys = [k for k in await keys_under(prefix) if k.startswith(f"{prefix}:{part}")]
        return {k: await client.ttl(k) for k in keys}
    finally:
        await client.aclose()


async def test_a_booking_and_its_references_expire_after_its_end(start_hub) -> None:
    hub = await start_hub(
        routes=[
            {"name": "confirmations", "on": ["booking_confirmed"], "send": [{"to": "inxmail"}]},
            {
                "name": "follow-up",
                "on": "after_meeting_ends",
                "offset": "3d",
                "send": [{"to": "inxmail", "event": "calenso.booking.inform-customer"}],
            },
        ]
    )
    await hub.accept("calendly/invitee_created.json")
    await hub.worker.drain()
    [booking] = (await _ttls(hub.prefix, "booking:")).values()
    refs = await _ttls(hub.prefix, "bookref:")
    end = (
        await hub.store.booking_by_ref(
            "https://api.calendly.com/scheduled_events/EVT0000000042/invitees/INV0000000042"
        )
    ).snapshot["end"]
    from datetime import datetime

    wanted = datetime.fromisoformat(end).timestamp() - hub.clock.now() + 3 * DAY + 7 * DAY
    assert wanted - 60 < booking <= wanted  # end + the follow-up's 3 days + retention
    assert refs and all(wanted - 60 < ttl <= wanted for ttl in refs.values())


async def test_dead_letters_expire_and_a_replay_keeps_them(start_hub) -> None:
    hub = await start_hub(store__dead_letter_retention="2d")
    hub.sink.default = 400  # refused: dead at once
    await hub.accept("calendly/invitee_created.json")
    await hub.worker.drain()
    dead = await hub.store.dead_letters()
    assert dead
    for letter in dead:
        ttls = await _ttls(hub.prefix, f"job:{letter.id}")
        assert len(ttls) == 2 and all(DAY < t <= 2 * DAY for t in ttls.values())
    assert await hub.store.replay(dead[0].id, hub.clock.now())
    assert set((await _ttls(hub.prefix, f"job:{dead[0].id}")).values()) == {-1}


async def test_destination_memory_expires_and_old_entries_stay_readable(start_hub) -> None:
    hub = await start_hub()
    await hub.store.remember("auvious", "booking-1", "appointment-9")
    [ttl] = (await _ttls(hub.prefix, "mem:auvious:")).values()
    assert 366 * DAY < ttl <= 374 * DAY
    client = aioredis.Redis.from_url(REDIS_URL)
    try:  # an entry written before entries had keys of their own
        await client.hset(f"{hub.prefix}:memory:auvious", "booking-0", "appointment-8")
    finally:
        await client.aclose()
    assert await hub.store.recall("auvious", "booking-0") == "appointment-8"
    assert await hub.store.recall("auvious", "booking-1") == "appointment-9"
    await hub.store.forget("auvious", "booking-0")
    assert await hub.store.recall("auvious", "booking-0") is None
