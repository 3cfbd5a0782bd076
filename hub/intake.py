"""``POST /hooks/{source}``: the request path does the minimum and answers once durable.

headers (single, screened) → size limit → body, bounded in time → signature on the raw
bytes → JSON, bounded in depth → schema → dedup key → one atomic store call → 202
``{"id": …}``. Routing, templates and destinations are the worker's business, so a provider
never sees a 5xx because a destination is down.

A request refused before its body is read is answered at once and its connection closed,
so a slow or hostile sender holds neither memory nor a read slot.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import aiohttp
import orjson
import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from hub.appkeys import CLOCK, CONFIG, METRICS, READ_LIMITS, READING, SOURCES, STORE, WORKER
from hub.connector import SourceConnector
from hub.errors import (
    BodyTimeout,
    IntakeError,
    InvalidPayload,
    PayloadTooLarge,
    SignatureError,
    StoreError,
    UnknownSource,
)
from hub.ids import new_id
from hub.store import InboundEvent

__all__ = ["UNKNOWN_SOURCE", "nesting_exceeds", "receive"]

log = structlog.get_logger(__name__)

UNKNOWN_SOURCE = "(unknown)"  # the one metric label of every source not in hub.yaml


def _json(body: dict[str, object], status: int, **headers: str) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )


def nesting_exceeds(value: Any, limit: int, text: bytes | None = None) -> bool:
    """Whether ``value`` nests objects and arrays deeper than ``limit``; without recursion.
    ``text``, the JSON ``value`` was parsed from, answers at once when it opens no more
    than ``limit`` objects and arrays (each level opens one; brackets in strings only
    count more)."""
    if text is not None and text.count(b"{") + text.count(b"[") <= limit:
        return False
    if not isinstance(value, dict | list):
        return False
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def _screen(source: SourceConnector, request: web.Request, now: float) -> None:
    """What can be refused from the headers alone, before the body is read."""
    for header in source.single_headers:
        if len(request.headers.getall(header, ())) > 1:
            raise SignatureError(f"{header} header is repeated; send it once")
    try:
        source.screen(request.headers, now)
    except IntakeError:
        raise
    except (UnicodeError, ValueError) as error:
        raise SignatureError(f"signature headers cannot be read: {error}") from None
    limit = request.app[CONFIG].server.max_body
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"body is larger than the limit of {limit} bytes")


async def _read(request: web.Request) -> bytes:
    server = request.app[CONFIG].server
    try:
        limit = server.body_timeout.total_seconds()
        return await request.app[READ_LIMITS].within(limit, _read_in_turn(request))
    except TimeoutError:
        raise BodyTimeout(
            f"body not received within server.body_timeout "
            f"({server.body_timeout.total_seconds():g} s)"
        ) from None
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(f"body is larger than the limit of {server.max_body} bytes") from None
    except (RequestPayloadError, aiohttp.ClientPayloadError) as error:
        # e.g. a body that is not in the Content-Encoding it claims
        raise InvalidPayload(f"body cannot be read: {error}", field="(body)") from None


async def _read_in_turn(request: web.Request) -> bytes:
    async with request.app[READING]:
        return await request.read()


async def _answer_and_close(request: web.Request, response: web.Response) -> None:
    """Send the answer and close the connection, discarding a body that was never read
    (aiohttp would otherwise read and drop it for up to ten seconds)."""
    response.force_close()
    try:
        await response.prepare(request)
        await response.write_eof()
    except ConnectionError:  # the sender is gone already
        pass
    request.protocol.force_close()


async def receive(request: web.Request) -> web.Response:
    app = request.app
    name = request.match_info["source"]
    metrics = app[METRICS]
    started = time.perf_counter()
    now = app[CLOCK].now()
    event_id = new_id("evt", now)
    body: bytes | None = None
    try:
        source = app[SOURCES].get(name)
        if source is None:
            asked, name = name, UNKNOWN_SOURCE
            raise UnknownSource(f"no source named {asked[:64]!r} is configured")
        _screen(source, request, now)
        body = await _read(request)
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
        depth = app[CONFIG].server.max_depth
        if nesting_exceeds(payload, depth, body):
            raise InvalidPayload(
                f"body nests deeper than server.max_depth ({depth} levels)", field="(body)"
            )
        source.validator.check(payload)
        worker = app.get(WORKER)
        try:
            # a free slot of this process's worker takes the dispatch job at once
            with worker.reserve(1) if worker is not None else contextlib.nullcontext() as hand:
                accepted = await app[STORE].accept(
                    name,
                    source.dedup_key(request.headers, body),
                    body,
                    now,
                    event_id,
                    new_id("job", now),
                    source.order_key(payload),
                    window.total_seconds() if (window := source.dedup_window()) else None,
                    partition_key=source.partition_key(payload),
                    linked_keys=source.linked_keys(payload),
                    handoff=hand,
                )
                if accepted.job is not None and worker is not None:
                    # as the store keeps it: received_at to the millisecond
                    stored = InboundEvent(accepted.id, name, int(now * 1000) / 1000, body)
                    worker.start(accepted.job, stored)
        except ValueError as error:  # a value the store cannot take: this request only
            raise InvalidPayload(f"webhook cannot be stored: {error}") from None
    except IntakeError as error:
        metrics.webhook(name, error.code)
        log.warning(
            "intake.rejected",
            source=name,
            event_id=event_id,
            status=error.status,
            # a schema error quotes the payload's values: the log names the field only
            error=error.code if isinstance(error, InvalidPayload) else error.detail,
            field=error.field,
        )
        response = _json({**error.to_json(), "request_id": event_id}, error.status)
        if body is None and request.can_read_body:
            await _answer_and_close(request, response)
        return response
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
    if worker is not None and not accepted.duplicate and accepted.job is None:
        worker.wake()
    return _json({"id": accepted.id, "duplicate": accepted.duplicate}, 202)
