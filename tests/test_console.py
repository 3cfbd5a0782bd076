"""The web console: driven in headless Chromium (Debian's chromium through Playwright),
and its sign-in, CSRF and role rules over plain HTTP."""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest

from tests.admin_helpers import ADMIN, OPERATOR, VIEWER, booking_body

CHROMIUM = os.environ.get("HUB_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def _chromium() -> str:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"chromium is not installed at {CHROMIUM}; .ci/run installs it")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return CHROMIUM


@pytest.fixture
async def browser():
    from playwright.async_api import async_playwright

    executable = _chromium()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=executable, headless=True, args=ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


async def dead_letter_hub(start_hub, sink):
    hub = await start_hub(admin=ADMIN)
    sink.default = 422
    await hub.post_calendly(booking_body(1))
    await hub.worker.drain()
    assert len(await hub.store.dead_letters()) == 2
    return hub


async def sign_in(page, hub, token: str) -> None:
    await page.goto(str(hub.client.make_url("/console/")))
    assert page.url.endswith("/console/login")
    await page.fill("#token", token)
    await page.click("button[type=submit]")
    await page.wait_for_url(re.compile(r"/console/overview$"))


async def test_an_operator_finds_a_dead_letter_replays_it_and_it_arrives(
    start_hub, sink, browser
) -> None:
    hub = await dead_letter_hub(start_hub, sink)
    [first, second] = await hub.store.dead_letters()
    context = await browser.new_context()
    page = await context.new_page()
    await sign_in(page, hub, OPERATOR)
    [cookie] = await context.cookies()
    assert (cookie["name"], cookie["httpOnly"], cookie["sameSite"]) == (
        "hub_session",
        True,
        "Strict",
    )
    assert time.time() < cookie["expires"] < time.time() + 9 * 3600
    assert OPERATOR not in cookie["value"]
    assert "2" in await page.inner_text(".tile.bad")

    await page.click("text=dead letters")
    await page.wait_for_url(re.compile(r"/console/dead-letters$"))
    row = page.locator("tr.dead-letter", has_text=first.id)
    assert "422" in await row.inner_text()
    sink.default = 202
    before = len(sink.requests)
    await row.get_by_role("button", name="Replay").click()
    await page.wait_for_url(re.compile(r"notice=replayed"))
    assert first.id not in await page.inner_text("table")
    assert second.id in await page.inner_text("table")
    await hub.worker.drain()
    arrived = sink.requests[before:]
    assert len(arrived) == 1
    assert arrived[0].json()["transactionId"] == first.id
    assert (await hub.store.get_job(first.id)).state == "done"

    # all of a destination at once
    await page.select_option("select[name=destination]", "inxmail")
    await page.click("text=Show")
    await page.get_by_role("button", name=re.compile("Replay all 1 of inxmail")).click()
    await page.wait_for_url(re.compile(r"notice=replayed\+1"))
    await hub.worker.drain()
    assert len(sink.requests) == before + 2

    # the event page shows its messages with their attempts, and replays
    await page.goto(str(hub.client.make_url(f"/console/events/{first.event_id}")))
    body = await page.inner_text("main")
    assert "to inxmail by route confirmations" in body and "422" in body
    await page.get_by_role("button", name="Replay").click()
    await page.wait_for_url(re.compile(rf"/console/events/{first.event_id}$"))
    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_url(re.compile(r"/console/login$"))
    assert await context.cookies() == []
    await context.close()


async def test_a_viewer_sees_no_replay_and_cannot_replay(start_hub, sink, browser) -> None:
    hub = await dead_letter_hub(start_hub, sink)
    [first, _] = await hub.store.dead_letters()
    context = await browser.new_context()
    page = await context.new_page()
    await sign_in(page, hub, VIEWER)
    await page.goto(str(hub.client.make_url("/console/dead-letters")))
    assert first.id in await page.inner_text("table")
    assert await page.locator("button", has_text="Replay").count() == 0
    assert await page.locator("form[method=post][action*=replay]").count() == 0
    await page.goto(str(hub.client.make_url(f"/console/events/{first.event_id}")))
    assert await page.locator("button", has_text="Replay").count() == 0
    await page.goto(str(hub.client.make_url("/console/destinations")))
    assert await page.locator("button", has_text="Enable").count() == 0
    # a forged form post is refused all the same
    answer = await page.request.post(
        str(hub.client.make_url(f"/console/jobs/{first.id}/replay")), form={"csrf": "forged"}
    )
    assert answer.status == 403
    assert (await hub.store.get_job(first.id)).state == "dead"
    await context.close()


async def test_booking_timeline_shows_reminders_in_local_and_utc(start_hub, sink, browser) -> None:
    reminder = {
        "name": "reminder",
        "on": "before_meeting_starts",
        "offset": "24h",
        "send": [{"to": "inxmail"}],
    }
    hub = await start_hub(admin=ADMIN, routes=[reminder])
    event_id = await hub.accept("calendly/invitee_created.json")
    await hub.worker.drain()
    uid = (await hub.store.event_record(event_id)).booking
    context = await browser.new_context()
    page = await context.new_page()
    await sign_in(page, hub, VIEWER)
    await page.goto(str(hub.client.make_url("/console/events?email=mara.keller%40example.org")))
    await page.click(f"text={event_id}")
    await page.click(f"text={uid}")
    row = page.locator("tr.trigger.upcoming")
    text = await row.inner_text()
    assert "2026-12-02 09:30:00 UTC" in text
    zone = (await hub.store.get_booking(uid)).snapshot["time_zone"]
    assert zone and re.search(r"2026-12-02 \d\d:30", text)
    await context.close()


# --- over plain HTTP: the rules behind the pages ----------------------------------------


async def _login(hub, token: str):
    form = await (await hub.client.get("/console/login")).text()
    csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
    return await hub.client.post(
        "/console/login", data={"token": token, "csrf": csrf}, allow_redirects=False
    )


async def test_sign_in_refusals_csrf_and_escaping(start_hub, sink) -> None:
    hub = await start_hub(admin=ADMIN)
    assert (await hub.client.get("/console/overview", allow_redirects=False)).status == 303
    assert (await _login(hub, "not-a-token-at-all-1234")).status == 401
    stale = await hub.client.post("/console/login", data={"token": OPERATOR, "csrf": "x"})
    assert stale.status == 403
    response = await _login(hub, OPERATOR)
    assert response.status == 303
    assert "HttpOnly" in response.headers["Set-Cookie"]
    assert "SameSite=Strict" in response.headers["Set-Cookie"]
    page = await (await hub.client.get("/console/destinations")).text()
    assert re.search(r'name="csrf" value="[^"]+"', page)  # the sign-out form's
    # no form without its token: a missing or wrong one is refused
    for data in ({}, {"csrf": "wrong"}):
        refused = await hub.client.post("/console/destinations/inxmail/enable", data=data)
        assert refused.status == 403
        kept = await hub.client.post("/console/logout", data=data, allow_redirects=False)
        assert kept.status == 403  # nor can another site sign you out
    assert ">Enable<" not in page  # the destination is healthy: nothing to enable

    # hostile booking values are shown escaped
    body = booking_body(7, "x@example.org").replace(
        b'"name": "Mara Keller"', b'"name": "<script>alert(1)</script>"'
    )
    event_id = (await (await hub.post_calendly(body)).json())["id"]
    await hub.worker.drain()
    html = await (await hub.client.get(f"/console/events/{event_id}")).text()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;" in html
    assert (await hub.client.get("/console/events/evt_nope")).status == 404
    assert (await hub.client.get("/console/events?limit=0")).status == 400
