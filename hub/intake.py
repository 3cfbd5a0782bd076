"""``POST /hooks/{source}``: the request path does the minimum and answers once durable.

size limit → signature on the raw bytes → JSON → schema → dedup key → one atomic store
call → 202 ``{"id": …}``. Routing, templates and destinations are the worker's business, so
a provider never sees a 5xx because a destination is down.
"""

from __future__ import annotations

import time

import aiohttp
import orjson
import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from hub.appkeys import CLOCK, CONFIG, METRICS, SOURCES, STORE, WORKER
from hub.errors import (
    IntakeError,
    InvalidPayload,
    PayloadTooLarge,
    SignatureError,
    StoreError,
    UnknownSource,
)
from hub.ids import new_id

__all__ = ["receive"]

log = structlog.get_logger(__name__)


def _json(body: dict[str, object], status: int, **headers: str) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )


async def receive(request: web.Request) -> web.Response:
    app = request.app
    name = request.match_info["source"]
    metrics = app[METRICS]
    started = time.perf_counter()
    now = app[CLOCK].now()
    event_id = new_id("evt", now)
    try:
        source = app[SOURCES].get(name)
        if source is None:
            raise UnknownSource(f"no source named {name!r} is configured")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            limit = request.app[CONFIG].server.max_body
            raise PayloadTooLarge(f"body is larger than the limit of {limit} bytes") from None
        except (RequestPayloadError, aiohttp.ClientPayloadError) as error:
            # e.g. a body that is not in the Content-Encoding it claims
            raise InvalidPayload(f"body cannot be read: {error}", field="(body)") from None
        try:
            source.verify(request.headers, body, now)
        except IntakeError:
            raise
        except (UnicodeError, ValueError) as error:  # header bytes that are no text, say
            raise SignatureError(f"signature headers cannot be read: {error}") from None
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as error:
            raise InvalidPayload(f"body is not valid JSON: {error}", field="(body)") from None
        source.validator.check(payload)
        accepted = await app[STORE].accept(
            name,
            source.dedup_key(request.headers, body),
            body,
            now,
            event_id,
            new_id("job", now),
            source.order_key(payload),
            partition_key=source.partition_key(payload),
            linked_keys=source.linked_keys(payload),
        )
    except IntakeError as error:
        metrics.webhook(name, error.code)
        log.warning(
            "intake.rejected",
            source=name,
            event_id=event_id,
            status=error.status,
            error=error.detail,
        )
        return _json({**error.to_json(), "request_id": event_id}, error.status)
    except StoreError as error:
        metrics.webhook(name, "store_unavailable")
        log.error("intake.store_unavailable", source=name, event_id=event_id, error=str(error))
        detail = {"error": "store_unavailable", "detail": "the hub cannot store events right now"}
        return _json({**detail, "request_id": event_id}, 503, **{"Retry-After": "5"})
    finally:
        metrics.intake_seconds.observe(time.perf_counter() - started)
    outcome = "duplicate" if accepted.duplicate else "accepted"
    metrics.webhook(name, outcome)
    if accepted.duplicate:  # the id of the event accepted before; this request's for tracing
        log.info("intake.duplicate", source=name, event_id=accepted.id, request_id=event_id)
    else:
        log.info("intake.accepted", source=name, event_id=accepted.id)
    worker = app.get(WORKER)
    if worker is not None and not accepted.duplicate:
        worker.wake()
    return _json({"id": accepted.id, "duplicate": accepted.duplicate}, 202)
