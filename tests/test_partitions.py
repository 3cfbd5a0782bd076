"""The partitioned store through the whole hub: a booking's history stays in one partition,
and store URLs (Sentinel, Cluster) are read strictly."""

from __future__ import annotations

import json

import pytest

from hub.store.connect import parse_store_url
from hub.store.partitions import partition_of
from tests.conftest import fixture_json

PARTITIONS = 8
BASE = "https://api.calendly.com/scheduled_events/EV{n}/invitees/{name}"
ROUTES = [
    {
        "name": "all",
        "on": ["booking_confirmed", "booking_rescheduled", "booking_cancelled"],
        "send": [{"to": "inxmail"}],
    }
]


def _three_invitees() -> list[str]:
    """Three invitee URIs that fall into three different partitions."""
    found: list[str] = []
    n = 0
    while len(found) < 3:
        uri = BASE.format(n=n, name=f"INV{n:04d}")
        if partition_of(uri, PARTITIONS) not in {partition_of(u, PARTITIONS) for u in found}:
            found.append(uri)
        n += 1
    return found


def _created(uri: str, old: str | None = None, day: int = 3) -> bytes:
    webhook = fixture_json("calendly/invitee_created.json")
    webhook["payload"].update(uri=uri, old_invitee=old)
    webhook["payload"]["scheduled_event"].update(
        start_time=f"2026-12-{day:02d}T09:30:00.000000Z",
        end_time=f"2026-12-{day:02d}T10:15:00.000000Z",
    )
    return json.dumps(webhook).encode()


def _moved(uri: str, new: str) -> bytes:
    webhook = fixture_json("calendly/invitee_canceled.json")
    webhook["payload"].update(uri=uri, rescheduled=True, new_invitee=new)
    return json.dumps(webhook).encode()


async def test_a_chain_of_reschedules_stays_in_the_partition_of_its_first_booking(
    start_hub,
) -> None:
    hub = await start_hub(store__partitions=PARTITIONS, routes=ROUTES)
    a, b, c = _three_invitees()
    events = []
    # the second reschedule's halves come in the other order
    for body in (_created(a), _moved(a, b), _created(b, a, 10), _created(c, b, 17), _moved(b, c)):
        response = await hub.post_calendly(body)
        assert response.status == 202, await response.text()
        events.append((await response.json())["id"])
        await hub.worker.drain()

    home = partition_of(a, PARTITIONS)
    for event_id in events:
        assert await hub.store._where(lambda keys, e=event_id: keys.event(e)) == home
    sent = [r.json() for r in hub.sink.requests]
    assert {s["payload"]["appointment"]["uuid"] for s in sent} == {
        sent[0]["payload"]["appointment"]["uuid"]
    }
    kinds = [s["event"] for s in sent]
    assert kinds[:2] == ["calenso.booking.inform-customer", "calenso.booking.inform-partner"]
    assert len(kinds) == 6 and all("rebook" in k for k in kinds[2:])  # two reschedules
    assert [s["payload"]["appointment"]["start"] for s in sent[2::2]] == [
        "2026-12-10T09:30:00+00:00",
        "2026-12-17T09:30:00+00:00",
    ]


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis+sentinel://h1:26379,h2:26379", "names the service"),
        ("redis+sentinel://h1:26379/mymaster/zero", "is not a number"),
        ("redis+sentinel://h1:26379/mymaster/0/extra", "has the form"),
        ("redis+sentinel:///mymaster/0", "at least one host"),
        ("redis+sentinel://h1:99999/mymaster", "no valid port"),
        ("redis+sentinel://h1:26379,,h2/mymaster", "an empty host"),
        ("redis+sentinel://:26379/mymaster", "has no name"),
        ("redis+cluster://h1:7000/0", "has no path"),
        ("redis+cluster://h1:7000\r\nFLUSHALL/x", "no valid port"),
        ("postgres://db/hub", "expected a redis://"),
        ("redis+memcached://h1", "expected a redis://"),
        ("", "expected a redis://"),
    ],
    ids=lambda value: repr(value)[1:40],
)
def test_a_bad_store_url_is_refused_with_the_reason(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_store_url(url)


def test_store_urls_are_read_with_credentials_tls_and_options() -> None:
    sentinel = parse_store_url(
        "rediss+sentinel://app:s%40cret@h1:26379,[::1]:26380,h3/mymaster/2?sentinel_password=other"
    )
    assert (sentinel.kind, sentinel.service, sentinel.db, sentinel.tls) == (
        "sentinel",
        "mymaster",
        2,
        True,
    )
    assert sentinel.hosts == [("h1", 26379), ("::1", 26380), ("h3", 26379)]
    assert (sentinel.username, sentinel.password) == ("app", "s@cret")
    assert sentinel.options == {"sentinel_password": "other"}
    cluster = parse_store_url("redis+cluster://:pw@h1:7000,h2:7001")
    assert (cluster.kind, cluster.hosts, cluster.password) == (
        "cluster",
        [("h1", 7000), ("h2", 7001)],
        "pw",
    )
    assert parse_store_url("unix:///run/redis.sock?db=1").kind == "plain"
