"""A bare aiohttp server: reads the body, answers 202. The baseline of the intake benchmark
and the receiver of the delivery benchmarks. With --record FILE, it writes
(arrival time, appointment id) of each request to FILE when it gets SIGTERM.

    python bench/_sink.py PORT [--record FILE]
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time

from aiohttp import web


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--record")
    args = parser.parse_args()
    arrivals: list[tuple[float, str]] = []

    async def bare(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=202)

    async def record(request: web.Request) -> web.Response:
        body = await request.json()
        arrivals.append((time.time(), body["payload"]["appointment"]["id"]))
        return web.Response(status=202)

    app = web.Application()
    app.router.add_post("/{tail:.*}", record if args.record else bare)

    def dump(*_: object) -> None:
        if args.record:
            with open(args.record, "w") as out:
                json.dump(arrivals, out)
        sys.exit(0)

    signal.signal(signal.SIGTERM, dump)
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
