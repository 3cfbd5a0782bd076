"""Deliveries go where they were configured, and logs keep secrets and people out."""

from __future__ import annotations

import io
import json
import logging
from contextlib import redirect_stderr

import pytest
import structlog

from hub.logs import configure_logging
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
