"""A bare aiohttp server: reads the body, answers 202. The baseline of the intake benchmark
and the receiver of the delivery benchmarks. With --record it keeps (arrival time,
appointment id) of each request, and serves the list at GET /arrivals.

    python bench/_sink.py PORT [--record]
"""

from __future__ import annotations

import argparse
import signal
import sys
import time

from aiohttp import web


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    arrivals: list[tuple[float, str]] = []

    async def bare(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=202)

    async def record(request: web.Request) -> web.Response:
        body = await request.json()
        arrivals.append((time.time(), body["payload"]["appointment"]["id"]))
        return web.Response(status=202)

    async def listing(request: web.Request) -> web.Response:
        return web.json_response(arrivals)

    app = web.Application()
    app.router.add_post("/{tail:.*}", record if args.record else bare)
    app.router.add_get("/arrivals", listing)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    web.run_app(
        app, host="127.0.0.1", port=args.port, access_log=None, print=None, handle_signals=False
    )


if __name__ == "__main__":
    main()
