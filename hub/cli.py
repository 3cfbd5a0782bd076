"""The ``hub`` command: serve, worker, check, schema."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Sequence

import orjson
import structlog
from aiohttp import web

from hub import __version__
from hub.config import Config, load_config
from hub.errors import ConfigError
from hub.logs import configure_logging
from hub.plugins import get_plugin_manager

__all__ = ["main"]

log = structlog.get_logger("hub")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hub", description=__doc__)
    parser.add_argument("--version", action="version", version=f"hub {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.add_argument(
            "--config",
            default=os.environ.get("HUB_CONFIG", "hub.yaml"),
            help="configuration file (default: $HUB_CONFIG or hub.yaml)",
        )
        return sub

    serve = command("serve", "Run the HTTP intake and a worker in one process.")
    serve.add_argument("--host", help="override server.host")
    serve.add_argument("--port", type=int, help="override server.port")
    serve.add_argument("--no-worker", action="store_true", help="run the intake only")
    command("worker", "Run a worker only (start several to scale out).")
    command("check", "Validate the configuration and exit: 0 if valid, 2 if not.")
    commands.add_parser("schema", help="Print the JSON Schema of the canonical event.")
    return parser


def _load(path: str) -> Config:
    return load_config(path, get_plugin_manager())


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "schema":
        from hub.model import json_schema

        sys.stdout.write(orjson.dumps(json_schema(), option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    try:
        config = _load(args.config)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.command == "check":
        print(
            f"{args.config}: valid ({len(config.sources)} sources, "
            f"{len(config.destinations)} destinations, {len(config.routes)} routes)"
        )
        return 0
    configure_logging(config.log.level, config.log.format)
    if args.command == "serve":
        return _serve(config, args)
    return asyncio.run(_work(config))


def _serve(config: Config, args: argparse.Namespace) -> int:
    from hub.app import create_app

    host = args.host or config.server.host
    port = args.port if args.port is not None else config.server.port
    app = create_app(config, run_worker=not args.no_worker)
    log.info("hub.serving", host=host, port=port, config=config.path, version=__version__)
    web.run_app(
        app,
        host=host,
        port=port,
        shutdown_timeout=config.server.shutdown_timeout.total_seconds(),
        access_log=None,
        print=None,
    )
    log.info("hub.stopped")
    return 0


async def _work(config: Config) -> int:
    """A worker without HTTP: the application's resources, run by an AppRunner with no
    site, until SIGTERM or SIGINT."""
    from hub.app import create_app

    runner = web.AppRunner(create_app(config, run_worker=True), handle_signals=False)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await runner.setup()
    log.info("hub.worker", config=config.path, version=__version__)
    await stop.wait()
    log.info("hub.stopping")
    await runner.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
