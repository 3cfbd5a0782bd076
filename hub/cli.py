"""The hub command: serve, worker, check, dlq, replay, destinations, events, bookings,
plugins, schema, keygen."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import pluggy
import structlog
from aiohttp import web

from hub import __version__, heap
from hub.config import Config, load_config
from hub.crypto import new_key
from hub.errors import AdminError, ConfigError, NotFound, StoreError
from hub.logs import configure_logging
from hub.plugins import get_plugin_manager
from hub.store.embedded import attached

__all__ = ["main"]

log = structlog.get_logger("hub")


# ``--config`` is taken before or after a command's action (``hub dlq --config F list``,
# ``hub dlq list --config F``); every parser of a command that reads hub.yaml has it as a
# parent. Its default is filled in after parsing, so a later parser's does not overwrite
# an earlier one's value.
CONFIG_OPTION = argparse.ArgumentParser(add_help=False)
CONFIG_OPTION.add_argument(
    "--config",
    default=argparse.SUPPRESS,
    help="configuration file (default: $HUB_CONFIG or hub.yaml)",
)

# Commands that deliver or check everything need every secret of hub.yaml; the others
# only read or change the store, and run with some unset.
NEEDS_SECRETS = frozenset({"serve", "worker", "check"})


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hub", description=__doc__)
    parser.add_argument("--version", action="version", version=f"hub {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help, description=help, parents=[CONFIG_OPTION])

    serve = command("serve", "Run the HTTP intake and a worker in one process.")
    serve.add_argument("--host", help="override server.host")
    serve.add_argument("--port", type=int, help="override server.port")
    serve.add_argument("--no-worker", action="store_true", help="run the intake only")
    serve.add_argument(
        "--processes",
        type=int,
        default=1,
        help="processes sharing the port (SO_REUSEPORT), each with its intake and worker",
    )
    command("worker", "Run a worker only (start several to scale out).")
    command(
        "check",
        "Validate the configuration (exit 2 if invalid) and warn about store settings and "
        "credentials that put deliveries at risk.",
    )

    dlq = command("dlq", "Dead letters: jobs given up on, with their attempts.")
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    dlq_list = dlq_commands.add_parser(
        "list", help="List dead letters, oldest first.", parents=[CONFIG_OPTION]
    )
    dlq_list.add_argument("--destination", help="only this destination's")
    dlq_list.add_argument("--since", help="only those given up since: 2h, or an ISO time")
    dlq_list.add_argument("--limit", type=int, default=100)
    dlq_list.add_argument("--json", action="store_true", help="print JSON")
    dlq_show = dlq_commands.add_parser(
        "show", help="Show one job and all its attempts.", parents=[CONFIG_OPTION]
    )
    dlq_show.add_argument("id")
    dlq_show.add_argument("--json", action="store_true", help="print JSON")

    replay = command(
        "replay",
        "Make dead jobs (job_…) due again, or route accepted events (evt_…) again.",
    )
    replay.add_argument("ids", nargs="*", metavar="ID")
    replay.add_argument("--destination", help="every dead letter of this destination")
    replay.add_argument("--since", help="every dead letter given up since: 2h, or an ISO time")
    replay.add_argument(
        "--resend",
        action="store_true",
        help="events: send to every route again, not only to routes they were not sent to",
    )

    dests = command("destinations", "Show each destination's circuit, or enable one.")
    dests.add_argument("action", nargs="?", choices=["enable"])
    dests.add_argument("name", nargs="?")
    dests.add_argument("--json", action="store_true", help="print JSON")

    events = command("events", "Inbound webhooks: list them, or show one with its jobs.")
    event_commands = events.add_subparsers(dest="events_command", required=True, metavar="ACTION")
    events_list = event_commands.add_parser(
        "list", help="List events, newest first.", parents=[CONFIG_OPTION]
    )
    for name, what in (
        ("--source", "only this source's"),
        ("--type", "only those that became this canonical type"),
        ("--booking", "only this booking's (its uid)"),
        ("--email", "only those of this client email"),
        ("--since", "only those received since: 2h, or an ISO time"),
        ("--until", "only those received until: 2h (ago), or an ISO time"),
        ("--cursor", "continue a listing where it stopped"),
    ):
        events_list.add_argument(name, help=what)
    events_list.add_argument("--limit", type=int, default=50)
    events_list.add_argument("--json", action="store_true", help="print JSON")
    events_show = event_commands.add_parser(
        "show", help="Show one event, its payload and jobs.", parents=[CONFIG_OPTION]
    )
    events_show.add_argument("id")
    events_show.add_argument("--json", action="store_true", help="print JSON")

    bookings = command("bookings", "A booking's state and timeline.")
    booking_commands = bookings.add_subparsers(
        dest="bookings_command", required=True, metavar="ACTION"
    )
    bookings_show = booking_commands.add_parser(
        "show", help="Show a booking and its timeline.", parents=[CONFIG_OPTION]
    )
    bookings_show.add_argument("id", help="the booking's uid or id")
    bookings_show.add_argument("--json", action="store_true", help="print JSON")

    plugins = commands.add_parser("plugins", help="List the loaded plugins and what they add.")
    plugins.add_argument("--json", action="store_true", help="print JSON")
    commands.add_parser("schema", help="Print the JSON Schema of the canonical event.")
    commands.add_parser("keygen", help="Print a new key for store.encryption_keys.")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "destinations" and args.action == "enable" and not args.name:
        parser.error("destinations enable needs the name of a destination")
    if not hasattr(args, "config"):
        args.config = os.environ.get("HUB_CONFIG", "hub.yaml")
    if args.command == "schema":
        from hub.model import json_schema

        sys.stdout.write(orjson.dumps(json_schema(), option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    if args.command == "keygen":
        print(new_key())
        return 0
    if args.command == "plugins":
        from hub.plugins import describe_plugins

        found = describe_plugins(get_plugin_manager())
        if args.json:
            print(orjson.dumps(found, option=orjson.OPT_INDENT_2).decode())
        for plugin in [] if args.json else found:
            adds = ", ".join(
                f"{kind} {', '.join(names)}"
                for kind, names in plugin["connectors"].items()
                if names
            )
            hooks = ", ".join(plugin["hooks"])
            print(f"{plugin['name']:<24} {plugin['version']:<22} hooks: {hooks:<44} adds {adds}")
        return 0
    pm = get_plugin_manager()
    try:
        config = load_config(args.config, pm, secrets=args.command in NEEDS_SECRETS)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        with attached(config.store.path if config.store.embedded else None):
            return _run(config, pm, args)
    except StoreError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def _run(config: Config, pm: pluggy.PluginManager, args: argparse.Namespace) -> int:
    """A command that uses the store, with the store running."""
    if args.command == "serve":
        host = args.host or config.server.host
        port = args.port if args.port is not None else config.server.port
        problem = _cannot_listen(host, port)
        if problem:
            print(f"error: cannot listen on {host}:{port}: {problem}", file=sys.stderr)
            return 2
        configure_logging(config.log.level, config.log.format)
        return _serve(config, args)
    if args.command == "worker":
        configure_logging(config.log.level, config.log.format)
        _use_uvloop()
        heap.settle()
        return asyncio.run(_work(config))
    try:
        return asyncio.run(_operate(config, pm, args))
    except (ValueError, AdminError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1 if isinstance(error, NotFound) else 2


async def _operate(config: Config, pm: pluggy.PluginManager, args: argparse.Namespace) -> int:
    """The commands that read or change the store and exit."""
    from hub import operations
    from hub.admin import commands
    from hub.admin.service import AdminService
    from hub.app import store_from_config
    from hub.clock import SystemClock

    out = sys.stdout
    now = time.time()
    since = operations.parse_since(args.since, now) if getattr(args, "since", None) else None
    store = store_from_config(config)
    service = AdminService(config, store, SystemClock())
    try:
        if args.command == "check":
            counted = ", ".join(
                plural(len(items), noun)
                for items, noun in (
                    (config.sources, "source"),
                    (config.destinations, "destination"),
                    (config.routes, "route"),
                )
            )
            print(f"{args.config}: valid ({counted})")
            admin = config.admin
            print(
                f"admin API and console: on ({plural(len(admin.tokens), 'token')})"
                if admin.enabled
                else "admin API and console: off (no admin.tokens)"
            )
            await operations.check_settings(config, store, pm, sys.stderr)
            return 0
        if args.command == "dlq" and args.dlq_command == "list":
            return await commands.dlq_list(
                service,
                out,
                destination=args.destination,
                since=since,
                limit=args.limit,
                as_json=args.json,
            )
        if args.command == "dlq":
            return await commands.dlq_show(service, out, args.id, as_json=args.json)
        if args.command == "replay":
            return await commands.replay(
                service,
                out,
                args.ids,
                destination=args.destination,
                since=since,
                resend=args.resend,
            )
        if args.command == "events" and args.events_command == "list":
            query = _event_query(args, since, now)
            return await commands.events_list(service, out, query, args.json)
        if args.command == "events":
            return await commands.events_show(service, out, args.id, args.json)
        if args.command == "bookings":
            return await commands.bookings_show(service, out, args.id, args.json)
        if args.action == "enable":
            return await commands.enable_destination(service, out, args.name)
        return await commands.destinations(service, out, as_json=args.json)
    except StoreError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        await store.close()


def _event_query(args: argparse.Namespace, since: float | None, now: float) -> Any:
    """The filters of ``hub events list`` as the API's query; ValueError names a bad one."""
    from pydantic import ValidationError

    from hub import operations
    from hub.admin.models import EventQuery

    until = operations.parse_since(args.until, now) if args.until else None
    fields = {
        "source": args.source,
        "type": args.type,
        "booking": args.booking,
        "email": args.email,
        "since": datetime.fromtimestamp(since, UTC) if since is not None else None,
        "until": datetime.fromtimestamp(until, UTC) if until is not None else None,
        "cursor": args.cursor,
        "limit": args.limit,
    }
    try:
        return EventQuery.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as error:
        first = error.errors()[0]
        raise ValueError(f"--{first['loc'][0]}: {first['msg']}") from None


def plural(count: int, noun: str) -> str:
    """``1 source``, ``2 sources``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _use_uvloop() -> None:
    """uvloop's event loop where it is installed: the same asyncio, faster."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _serve(config: Config, args: argparse.Namespace) -> int:
    if args.processes > 1:
        return _serve_processes(config, args)
    return _serve_one(config, args, reuse_port=False)


def _cannot_listen(host: str, port: int) -> str | None:
    """Why the intake could not listen on host:port (address in use, no such address),
    or None. It binds as the server will (SO_REUSEADDR), and lets go at once."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as error:
        return str(error.strerror or error)
    for family, kind, proto, _name, address in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as error:
                return str(error.strerror or error).lower()
    return None


def _serve_processes(config: Config, args: argparse.Namespace) -> int:
    """``--processes N``: N forked processes on one port; the kernel spreads connections.
    SIGTERM or SIGINT to this one is passed to all; it exits 0 if they all do."""
    children = []
    stops = {signal.SIGTERM, signal.SIGINT}
    # held back until each side has its handler: a stop that comes while the children
    # start is passed on, and stops a child that is not serving yet just as cleanly
    signal.pthread_sigmask(signal.SIG_BLOCK, stops)
    for _ in range(args.processes):
        pid = os.fork()
        if pid == 0:  # a child: one hub process, until its signal
            code = 1
            try:
                code = _child(config, args, stops)
            finally:
                os._exit(code)
        children.append(pid)

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    for signum in stops:
        signal.signal(signum, forward)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, stops)
    codes = [os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]) for child in children]
    return 0 if all(code == 0 for code in codes) else 1


def _child(config: Config, args: argparse.Namespace, stops: set[signal.Signals]) -> int:
    """A forked process of ``--processes``: one hub process. A stop that comes before the
    server takes over the signals ends it at once, cleanly: nothing was accepted yet."""

    def stop_before_serving(_signum: int, _frame: object) -> None:
        raise SystemExit(0)

    for signum in stops:
        signal.signal(signum, stop_before_serving)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, stops)
    try:
        return _serve_one(config, args, reuse_port=True)
    except SystemExit:
        log.info("hub.stopped", before="serving")
        return 0


def _serve_one(config: Config, args: argparse.Namespace, *, reuse_port: bool) -> int:
    from hub.app import create_app

    _use_uvloop()
    host = args.host or config.server.host
    port = args.port if args.port is not None else config.server.port
    app = create_app(config, run_worker=not args.no_worker)
    heap.settle()
    log.info("hub.serving", host=host, port=port, config=config.path, version=__version__)
    try:
        web.run_app(
            app,
            host=host,
            port=port,
            shutdown_timeout=config.server.shutdown_timeout.total_seconds(),
            access_log=None,
            print=None,
            reuse_port=reuse_port or None,
        )
    except OSError as error:  # the port was taken between the check and the bind
        print(f"error: cannot listen on {host}:{port}: {error.strerror or error}", file=sys.stderr)
        return 2
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
