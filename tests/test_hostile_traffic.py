"""Hostile traffic against a real ``hub serve``: generated bodies and headers on every
source, slow bodies, a poisoned batch and poisoned mail. While Redis is up, nothing gets a
5xx, and one request never fails another.

``HUB_HOSTILE_EXAMPLES`` raises the number of generated requests (default 150); the
statuses seen are printed (``pytest -s``).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import hashlib
import hmac
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.calendly import sign
from connectors.cronofy import sign as cronofy_sign
from hub.store.redis import RedisStore
from tests.conftest import REDIS_URL, SIGNING_KEY, fixture_json
from tests.test_email_invite import ACTION, Inbox, mail_destination, smtp
from tests.test_processes import free_port, processes, ready, write_config

__all__ = ["processes", "smtp"]

pytestmark = pytest.mark.subprocess

CRONOFY_SECRET = "cronofy-hostile-secret-0123"
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
HUB_CODE = Path(__file__).resolve().parent.parent / "hub"
EXAMPLES = int(os.environ.get("HUB_HOSTILE_EXAMPLES", "150"))


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _sources(tmp_path: Path) -> dict[str, Any]:
    schema = tmp_path / "shop.json"
    schema.write_text(json.dumps({"type": "object", "required": ["order"]}))
    return {
        "calendly": {"connector": "calendly", "signing_key": "${CALENDLY_SIGNING_KEY}"},
        "cronofy": {"connector": "cronofy", "client_secrets": [CRONOFY_SECRET]},
        "shop": {"connector": "webhook", "secrets": [WHSEC], "schema_file": str(schema)},
    }


async def _serve(tmp_path, processes, prefix, sink_url, **overrides):
    port = free_port()
    config = write_config(
        tmp_path,
        prefix,
        sink_url,
        server__port=port,
        sources=_sources(tmp_path),
        **overrides,
    )
    server = await processes("serve").start("serve", "--config", config)
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:
        await ready(http, f"{base}/readyz")
    return server, port


def _signed_headers(source: str, body: bytes, msg_id: str) -> dict[str, str]:
    now = int(time.time())
    if source == "calendly":
        return {"Calendly-Webhook-Signature": sign(SIGNING_KEY, now, body)}
    if source == "cronofy":
        return {"Cronofy-HMAC-SHA256": cronofy_sign(CRONOFY_SECRET, body)}
    key = base64.b64decode(WHSEC.removeprefix("whsec_"))
    signed = f"{msg_id}.{now}.".encode() + body
    digest = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(now),
        "webhook-signature": f"v1,{digest}",
    }


async def _raw(port: int, request: bytes) -> int:
    """Send bytes, return the status (0 if the server closed without one)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 10)
    except (ConnectionError, TimeoutError):
        return 0
    finally:
        writer.close()
    parts = line.split()
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
header_names = st.sampled_from(
    [
        "Calendly-Webhook-Signature",
        "Cronofy-HMAC-SHA256",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "Content-Type",
        "Content-Encoding",
        "X-Anything",
    ]
)
header_values = st.binary(max_size=200).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
FIXTURES = {
    "calendly": fixture_json("calendly/invitee_created.json"),
    "cronofy": fixture_json("cronofy/smart_invite_reply.json"),
    "shop": {"order": "A-1", "amount": 3},
}


@st.composite
def requests(draw) -> tuple[str, bytes]:
    source = draw(st.sampled_from(["calendly", "cronofy", "shop", "nowhere"]))
    kind = draw(st.sampled_from(["bytes", "json", "mutated", "deep"]))
    if kind == "bytes":
        body = draw(st.binary(max_size=2000))
    elif kind == "json":
        body = json.dumps(draw(json_values)).encode()
    elif kind == "deep":
        depth = draw(st.integers(min_value=1, max_value=1200))
        body = ('{"a":' * depth + "1" + "}" * depth).encode()
    else:
        payload = json.loads(json.dumps(FIXTURES.get(source, {})))
        target = payload.get("payload", payload)
        for key in draw(st.lists(st.sampled_from(sorted(target) or ["x"]), max_size=3)):
            target[key] = draw(json_values)
        body = json.dumps(payload).encode()
    headers: list[tuple[bytes, bytes]] = []
    if draw(st.booleans()):  # a right signature, so the body reaches JSON and the schema
        msg_id = draw(st.text(min_size=1, max_size=30).filter(lambda t: t.isprintable()))
        for name, value in _signed_headers(source, body, msg_id).items():
            headers.append((name.encode(), value.encode()))
    for name, value in draw(st.lists(st.tuples(header_names, header_values), max_size=4)):
        headers.append((name.encode(), value))
    head = b"POST /hooks/" + source.encode() + b" HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n"
    head += b"Content-Length: " + str(len(body)).encode() + b"\r\n"
    head += b"".join(n + b": " + v + b"\r\n" for n, v in headers)
    return source, head + b"\r\n" + body


async def test_generated_requests_never_get_a_5xx(redis_prefix, sink, tmp_path, processes):
    server, port = await _serve(tmp_path, processes, redis_prefix, sink.url)
    statuses: collections.Counter[int] = collections.Counter()
    loop = asyncio.get_running_loop()
    sent: list[bytes] = []

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(requests())
    def collect(case: tuple[str, bytes]) -> None:
        sent.append(case[1])

    await loop.run_in_executor(None, collect)  # generation only: no event loop inside
    for source in ("calendly", "cronofy", "shop"):  # and the legitimate among them
        body = json.dumps(FIXTURES[source]).encode()
        headers = _signed_headers(source, body, "msg_legit")
        sent.append(
            f"POST /hooks/{source} HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n".encode()
            + b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items())
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
    failed = []
    for request in sent:
        status = await _raw(port, request)
        statuses[status] += 1
        if status >= 500:
            failed.append(request[:600])
    print(f"\nhostile requests by status: {dict(sorted(statuses.items()))}")
    assert sum(statuses.values()) == EXAMPLES + 3
    assert not failed, failed
    assert statuses[0] == 0  # every request got an answer
    assert statuses[202] >= 3 and statuses[401] > 0 and statuses[400] > 0
    assert await server.stop(signal.SIGTERM) == 0
    # aiohttp logs the requests its parser refuses (answered 400); no hub code may fail
    hub_code = str(HUB_CODE)
    assert hub_code not in server.output()
    assert '"level": "error"' not in server.output()


async def test_slow_bodies_hold_no_memory_and_a_poisoned_batch_fails_alone(
    redis_prefix, sink, tmp_path, processes
):
    server, port = await _serve(
        tmp_path,
        processes,
        redis_prefix,
        sink.url,
        server__max_body="256KiB",
        server__body_timeout="2s",
    )
    pid = server.proc.pid
    # 150 connections declaring 262,144 bytes and sending 262,000, with no signature
    chunk = b"x" * 262_000
    head = (
        b"POST /hooks/calendly HTTP/1.1\r\nHost: hub\r\nContent-Length: 262144\r\n"
        b"Content-Type: application/json\r\n\r\n"
    )
    # A first round lets the allocator reach its working size; what a later round adds
    # is what the bodies hold. Before the fix, each connection waited for its last bytes
    # with 262,000 bytes read: 37 MiB per round, held until the sender gave up. The
    # allocator's own growth is noisy (a later round of the same code grew by 0 or by
    # 19 MiB, and two such rounds in a row came 1 run in 4), so the least of four later
    # rounds is judged: what the bodies hold shows in every round.
    rounds = []
    for _ in range(5):
        before = _rss_kib(pid)
        statuses = await asyncio.gather(*(_raw(port, head + chunk) for _ in range(150)))
        rounds.append(_rss_kib(pid) - before)
        assert set(statuses) <= {401, 0} and statuses.count(401) >= 140
    print(f"\nslow bodies: KiB more resident after each round of 150: {rounds}")
    assert min(rounds[1:]) < 8 * 1024, f"{rounds} KiB held by slow bodies"

    # a batch: 20 good webhooks and 5 whose id is not UTF-8, all at once
    good = []
    for n in range(20):
        body = json.dumps({"order": f"A-{n}"}).encode()
        headers = _signed_headers("shop", body, f"msg_{n}")
        good.append(
            b"POST /hooks/shop HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n"
            + b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items())
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
    poisoned = [
        request.replace(b"webhook-id: msg_", b"webhook-id: \xff\xfe_", 1) for request in good[:5]
    ]
    answers = await asyncio.gather(*(_raw(port, r) for r in [*poisoned, *good]))
    assert answers[5:] == [202] * 20
    assert all(400 <= a < 500 for a in answers[:5])
    assert await server.stop(signal.SIGTERM) == 0


async def test_poisoned_mail_leaves_the_circuit_closed(
    redis_prefix, sink, tmp_path, processes, smtp
):
    action = {**ACTION, "email_subject": "Your meeting, {{ client.name }}"}
    server, port = await _serve(
        tmp_path,
        processes,
        redis_prefix,
        sink.url,
        destinations={"mail": mail_destination(smtp)},
        routes=[{"name": "invites", "on": ["booking_confirmed"], "send": [action]}],
    )
    breakers = ["\u2028", "\u0085", "\x0b", "\x0c"]
    async with aiohttp.ClientSession() as http:
        for i in range(32):
            payload = fixture_json("calendly/invitee_created.json")
            invitee = payload["payload"]
            invitee["uri"] += f"-{i}"
            invitee["name"] = f"Eve{breakers[i % 4]}X" if i < 12 else f"Client {i}"
            body = json.dumps(payload).encode()
            headers = _signed_headers("calendly", body, "")
            async with http.post(
                f"http://127.0.0.1:{port}/hooks/calendly", data=body, headers=headers
            ) as response:
                assert response.status == 202
    async with asyncio.timeout(30):  # a bound: the mail comes as soon as it is sent
        while len(smtp.messages) < 20:  # noqa: ASYNC110 (another process sends)
            await asyncio.sleep(0.05)
    assert sorted(m["Subject"] for m in smtp.messages) == sorted(
        f"Your meeting, Client {i}" for i in range(12, 32)
    )
    store = RedisStore.from_url(REDIS_URL, prefix=redis_prefix)
    try:
        async with asyncio.timeout(30):
            while len(await store.dead_letters()) < 12:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        [state] = await store.destination_states(["mail"])
        assert (state.state, state.window_failed) == ("closed", 0)
    finally:
        await store.close()
    assert await server.stop(signal.SIGTERM) == 0


assert Inbox  # the SMTP receiver the smtp fixture runs
