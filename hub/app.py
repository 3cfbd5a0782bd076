"""The aiohttp application: intake, health, metrics; workers too when asked."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pluggy
import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from hub import stages
from hub.appkeys import (
    CLOCK,
    CONFIG,
    DESTINATIONS,
    HTTP,
    METRICS,
    PLUGINS,
    READ_LIMITS,
    READING,
    SOURCES,
    STORE,
    WORKER,
)
from hub.clock import Clock, SystemClock
from hub.config import Config
from hub.connector import ConnectorContext
from hub.deadlines import Deadlines
from hub.errors import StoreError
from hub.ics import invitation
from hub.intake import receive
from hub.metrics import Metrics
from hub.model import Booking
from hub.outbound import client_session
from hub.plugins import get_plugin_manager
from hub.posting import Poster
from hub.routing import Router
from hub.runtime import build_destinations, build_sources
from hub.store import Store, open_store
from hub.store.embedded import socket_url
from hub.worker import Worker

__all__ = ["create_app", "make_worker", "store_from_config"]

log = structlog.get_logger(__name__)


def create_app(
    config: Config,
    *,
    plugin_manager: pluggy.PluginManager | None = None,
    clock: Clock | None = None,
    run_worker: bool = False,
) -> web.Application:
    """The hub as an aiohttp application. With ``run_worker`` it also runs a worker for as
    long as the application runs."""
    app = web.Application(client_max_size=config.server.max_body)
    pm = plugin_manager or get_plugin_manager()
    app[CONFIG] = config
    app[PLUGINS] = pm
    app[CLOCK] = clock or SystemClock()
    app[METRICS] = Metrics()
    app[SOURCES] = build_sources(config, pm)
    app[WORKER] = None
    app[READING] = asyncio.Semaphore(config.server.max_reading)
    app[READ_LIMITS] = Deadlines()
    app.cleanup_ctx.append(_store)
    app.cleanup_ctx.append(_http)
    if run_worker:
        app.cleanup_ctx.append(_worker)
    if stages.every():
        app[METRICS].registry.register(stages.StageCollector())
    app.router.add_post("/hooks/{source}", stages.wrap("intake", receive))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/bookings/{token}.ics", booking_invitation)
    if config.admin.enabled:
        from hub.admin.web import add_admin

        add_admin(app)
    return app


async def _store(app: web.Application) -> AsyncIterator[None]:
    app[STORE] = store_from_config(app[CONFIG])
    yield
    await app[STORE].close()


async def _http(app: web.Application) -> AsyncIterator[None]:
    session, public = client_session(), client_session(public_only=True)
    posts, public_posts = Poster(), Poster(public_only=True)
    app[HTTP] = session
    context = ConnectorContext(
        http=session,
        clock=app[CLOCK],
        store=app[STORE],
        public_http=public,
        posts=posts,
        public_posts=public_posts,
    )
    app[DESTINATIONS] = build_destinations(app[CONFIG], app[PLUGINS], context)
    yield
    await session.close()
    await public.close()
    await posts.close()
    await public_posts.close()


def store_from_config(config: Config) -> Store:
    settings = config.store
    return open_store(
        socket_url(settings.path) if settings.embedded else settings.url,
        prefix=settings.prefix,
        dedup_window=settings.dedup_window.total_seconds(),
        retention=settings.retention.total_seconds(),
        endpoints={
            name: destination.endpoint_policy()  # type: ignore[attr-defined]
            for name, destination in config.destinations.items()
        },
        encryption_keys=[key.get_secret_value() for key in settings.encryption_keys],
        dead_letter_retention=settings.dead_letter_retention.total_seconds(),
        booking_horizon=max(
            (r.offset.total_seconds() for r in config.routes if r.offset is not None),
            default=0.0,
        ),
        partitions=settings.partitions,
        min_replicas=settings.min_replicas,
        replica_timeout=settings.replica_timeout.total_seconds(),
    )


def make_worker(app: web.Application) -> Worker:
    """A worker sharing the application's store, connectors, clock and metrics."""
    from hub.admin.outcomes import OPERATOR, OperatorSource

    return Worker(
        store=app[STORE],
        sources={OPERATOR: OperatorSource(), **app[SOURCES]},
        destinations=app[DESTINATIONS],
        router=Router.from_config(app[CONFIG]),
        config=app[CONFIG].worker,
        clock=app[CLOCK],
        metrics=app[METRICS],
        ics_links=app[CONFIG].server.ics_links(),
        http=app.get(HTTP),
    )


async def _worker(app: web.Application) -> AsyncIterator[None]:
    worker = make_worker(app)
    app[WORKER] = worker
    task = asyncio.create_task(worker.run(), name="hub-worker")
    app.on_shutdown.append(_stop_claiming)
    yield
    worker.stop()
    await task


async def _stop_claiming(app: web.Application) -> None:
    """On SIGTERM the worker stops claiming at once, while open requests finish."""
    worker = app[WORKER]
    if worker is not None:
        worker.stop()


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    try:
        await request.app[STORE].ping()
    except StoreError:  # the error names the store's host: it is for the log, not the world
        detail = "the store cannot be reached"
        return web.json_response({"status": "unavailable", "detail": detail}, status=503)
    return web.json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    app = request.app
    try:
        await app[METRICS].refresh(app[STORE], sorted(app[CONFIG].destinations), app[CLOCK].now())
    except StoreError as error:  # the counters still answer; the gauges keep their last
        log.warning("metrics.store_unavailable", error=str(error))
    body = generate_latest(app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def booking_invitation(request: web.Request) -> web.Response:
    """A booking's current invitation (REQUEST, or CANCEL once cancelled), for links in
    messages. 404 for a token that is not ours, as for one of an unknown booking."""
    links = request.app[CONFIG].server.ics_links()
    uid = links.verify(request.match_info["token"]) if links else None
    try:
        stored = await request.app[STORE].get_booking(uid) if uid else None
    except StoreError:
        return web.json_response(
            {"error": "store_unavailable", "detail": "the hub cannot read bookings right now"},
            status=503,
            headers={"Retry-After": "5"},
        )
    if stored is None:
        return web.json_response({"error": "not_found", "detail": "no such booking"}, status=404)
    booking = Booking.model_validate(stored.snapshot).model_copy(
        update={"sequence": stored.sequence}
    )
    body = invitation(booking, stamp=datetime.fromtimestamp(request.app[CLOCK].now(), UTC))
    method = "CANCEL" if booking.status == "cancelled" else "REQUEST"
    return web.Response(
        body=body,
        headers={
            "Content-Type": f"text/calendar; charset=utf-8; method={method}",
            "Cache-Control": "private, no-store",
        },
    )
