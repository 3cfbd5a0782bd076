"""Takes the README's picture of the console (docs/console.png): a hub on a local port
with a few bookings, one destination failing, shown in headless Chromium.

    python docs/screenshot.py [--page overview] [--out docs/console.png]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from pathlib import Path

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._common import ENV, drop_prefix, hub_config, redis_url, signed  # noqa: E402
from hub.app import create_app, make_worker  # noqa: E402
from hub.config import parse_config  # noqa: E402
from hub.plugins import get_plugin_manager  # noqa: E402
from tests.test_console import ARGS, CHROMIUM  # noqa: E402  (the tests' browser set-up)

TOKEN = "screenshot-operator-token"


async def receiver() -> tuple[web.AppRunner, str]:
    """A destination that refuses every other message."""
    seen = {"n": 0}

    async def handle(request: web.Request) -> web.Response:
        seen["n"] += 1
        return web.json_response({}, status=202 if seen["n"] % 3 else 422)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]


async def main_async(page_name: str, out: Path) -> None:
    from playwright.async_api import async_playwright

    with redis_url() as url:
        prefix = f"screenshot:{uuid.uuid4().hex[:8]}"
        sink, sink_url = await receiver()
        data = json.loads(hub_config(url, prefix, port=0, sink=sink_url))
        data["routes"].append(
            {"name": "reminder", "on": "before_meeting_starts", "offset": "24h",
             "send": [{"to": "inxmail"}]}
        )  # fmt: skip
        data["admin"] = {"tokens": [{"name": "ops", "token": TOKEN, "role": "operator"}]}
        config = parse_config(json.dumps(data), get_plugin_manager(), environ=ENV)
        app = create_app(config)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        base = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        try:
            async with aiohttp.ClientSession() as http:
                for n in range(12):
                    signature, body = signed(n, int(time.time()))
                    await http.post(
                        f"{base}/hooks/calendly",
                        data=body,
                        headers={"Calendly-Webhook-Signature": signature},
                    )
            await make_worker(app).drain()
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(
                    executable_path=CHROMIUM, headless=True, args=ARGS
                )
                page = await browser.new_page(viewport={"width": 1100, "height": 900})
                await page.goto(f"{base}/console/login")
                await page.fill("#token", TOKEN)
                await page.click("button[type=submit]")
                await page.wait_for_url(f"{base}/console/overview")
                if page_name != "overview":
                    await page.goto(f"{base}/console/{page_name}")
                await page.screenshot(path=str(out), type="png")
                await browser.close()
            print(f"wrote {out}")
        finally:
            await runner.cleanup()
            await sink.cleanup()
            drop_prefix(url, prefix)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--page", default="overview")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "console.png")
    args = parser.parse_args()
    asyncio.run(main_async(args.page, args.out))


if __name__ == "__main__":
    main()
