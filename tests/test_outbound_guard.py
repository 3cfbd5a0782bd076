"""Deliveries go where they were configured, and logs keep secrets and people out."""

from __future__ import annotations

import io
import json
import logging
from contextlib import redirect_stderr

import pytest
import structlog

from hub.logs import configure_logging
from hub.outbound import post_json
from tests.test_webhooks import NEW, OLD, start


async def test_a_redirect_is_not_followed_and_is_recorded_with_its_location(
    start_hub, sink
) -> None:
    hub = await start(
        start_hub,
        sink,
        routes=[{"name": "all", "on": ["booking_confirmed"], "send": [{"to": "hooks"}]}],
    )
    sink.default = (307, {"Location": f"{sink.url}/elsewhere"})
    await hub.accept("calendly/invitee_created.json")
    await hub.worker.drain()
    assert [r.path for r in sink.requests] == ["/in"]  # never to /elsewhere
    [dead] = await hub.store.dead_letters()
    assert f"redirecting to {sink.url}/elsewhere" in dead.reason
    assert [(a["outcome"], a["status"]) for a in dead.attempts] == [("dead", 307)]


async def test_deny_private_networks_refuses_a_loopback_destination(start_hub, sink) -> None:
    hub = await start_hub(
        destinations__hooks={
            "connector": "webhook",
            "url": f"{sink.url}/in",
            "secrets": [NEW, OLD],
            "deny_private_networks": True,
        },
        routes=[{"name": "all", "on": ["booking_confirmed"], "send": [{"to": "hooks"}]}],
    )
    await hub.accept("calendly/invitee_created.json")
    await hub.worker.drain()
    assert sink.requests == []
    [dead] = await hub.store.dead_letters()
    assert "127.0.0.1, a private address" in dead.reason


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_a_traceback_shows_no_local_variables(fmt) -> None:
    secret = "auvious-client-secret-0123456789"
    stream = io.StringIO()
    with redirect_stderr(stream):
        configure_logging("info", fmt)
        try:
            client_secret = secret
            email = "mara.keller@example.org"
            raise RuntimeError(f"token endpoint failed for {len(client_secret + email)}")
        except RuntimeError:
            structlog.get_logger("t").exception("deliver.error", job_id="job_1")
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()
    text = stream.getvalue()
    assert "deliver.error" in text and "RuntimeError" in text
    assert secret not in text
    assert "mara.keller" not in text
    if fmt == "json":
        assert json.loads(text)["job_id"] == "job_1"


async def test_a_public_only_client_refuses_a_private_address_as_it_connects(sink) -> None:
    """The addresses checked are the ones connected to: a name that passed the check
    before and resolves to a private address now (DNS rebinding) is refused all the same.
    Here the check before is left out, and the clients alone refuse the loopback: the
    delivery client (``Poster``) and the aiohttp session of the API calls."""
    import aiohttp

    from hub.errors import PermanentDelivery
    from hub.outbound import PrivateAddress, PublicResolver, client_session, request_failed
    from hub.posting import Poster

    with pytest.raises(PrivateAddress, match=r"^localhost resolves to (127\.0\.0\.1|::1), a"):
        await PublicResolver().resolve("localhost", 80)
    url = sink.url.replace("127.0.0.1", "localhost") + "/in"
    public, shared = Poster(public_only=True), Poster()
    try:
        with pytest.raises(PermanentDelivery, match=r"^localhost resolves to .*, a private "):
            await post_json(public, url, b"{}", now=0.0)
        assert public.connections() == 0
        # the shared client still connects to it
        assert (await post_json(shared, url, b"{}", now=0.0)).status == 202
    finally:
        await public.close()
        await shared.close()
    async with client_session(public_only=True) as session:
        with pytest.raises(aiohttp.ClientError) as refused:
            await session.post(url, data=b"{}")
        failure = request_failed(refused.value)
        assert isinstance(failure, PermanentDelivery)
        assert str(failure).startswith("localhost resolves to")
    assert len(sink.requests) == 1


async def test_a_destination_denying_private_networks_sends_through_the_public_session(
    start_hub, sink
) -> None:
    hub = await start_hub(
        destinations__hooks={
            "connector": "webhook",
            "url": sink.url.replace("127.0.0.1", "localhost") + "/in",
            "secrets": [NEW, OLD],
            "deny_private_networks": True,
        },
        routes=[{"name": "all", "on": ["booking_confirmed"], "send": [{"to": "hooks"}]}],
    )
    hooks = hub.worker.destinations["hooks"]
    assert hooks.context.session(True) is hooks.context.public_http is not None
    assert hooks.context.session(False) is hooks.context.http
    await hub.accept("calendly/invitee_created.json")
    await hub.worker.drain()
    assert sink.requests == []
    [dead] = await hub.store.dead_letters()
    assert dead.reason.startswith("localhost resolves to")
    assert "a private address, and deny_private_networks is set" in dead.reason
