"""The admin API, ``/api/v1``: JSON over the service layer, bearer tokens with roles.

Every operation is one row of ``OPERATIONS``: its handler, its query and body models and
its answer's model. The handlers validate with those models and the OpenAPI document is
generated from the same rows, so the two cannot drift.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
from aiohttp import web
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema

from hub import __version__
from hub.admin.models import (
    BookingView,
    Count,
    DeadLetterQuery,
    DeadReplay,
    DestinationView,
    ErrorBody,
    EventDetail,
    EventPage,
    EventQuery,
    JobPage,
    JobQuery,
    JobView,
    OutcomeIn,
    Recorded,
    Replayed,
    ReplayEvent,
    StatsView,
)
from hub.admin.settings import AdminToken
from hub.appkeys import ADMIN, CONFIG
from hub.errors import (
    AdminError,
    BadRequest,
    BodyTooLarge,
    Forbidden,
    NotFound,
    StoreError,
    Unauthorized,
)

__all__ = ["OPERATIONS", "add_api_routes", "authenticate", "openapi_document"]

log = structlog.get_logger("hub.admin")

Handler = Callable[[web.Request, AdminToken, Any, Any], Awaitable[Any]]


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    handler: Handler
    summary: str
    answer: Any  # a model, or list[model]
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    operator: bool = False  # needs the operator role
    not_found: bool = False  # may answer 404

    @property
    def name(self) -> str:
        return self.handler.__name__.lstrip("_")


# --- handlers -------------------------------------------------------------------------


def _id(request: web.Request) -> str:
    return request.match_info["id"]


async def _list_events(request: web.Request, who: AdminToken, query: Any, body: Any) -> Any:
    return await request.app[ADMIN].events(query)


async def _get_event(request: web.Request, who: AdminToken, query: Any, body: Any) -> Any:
    return await request.app[ADMIN].event(_id(request))


async def _replay_event(request: web.Request, who: AdminToken, query: Any, body: Any) -> Any:
    return await request.app[ADMIN].replay_event(_id(request), body.resend, who.name)


async def _get_booking(request: web.Request, who: AdminToken, query: Any, body: Any) -> Any:
    return await request.app[ADMIN].booking(_id(request))


async def _record_outcome(request: web.Request, who: AdminToken, query: Any, body: Any) -> Any:
    event_id = await request.app[ADMIN].record_outcome(
        _id(request), body.outcome, body.note, who.name
    )
    return Recorded(event_id=event_id, outcome=body.outcome)


async def _list_jobs(request: web.Request, who: AdminToken, query: Any, body: Any) -> Any:
    return await request.app[ADMIN].jobs(query)


async def _get_job(request: web.Request, who: AdminToken, query: Any, body: Any) -> Any:
    return await request.app[ADMIN].job(_id(request))


async def _replay_job(request: web.Request, who: AdminToken, query: Any, body: Any) -> Any:
    return await request.app[ADMIN].replay_job(_id(request), who.name)


async def _list_dead_letters(request: web.Request, who: AdminToken, query: Any, body: Any) -> Any:
    since = query.since.timestamp() if query.since else None
    return await request.app[ADMIN].dead_letters(query.destination, since, query.limit)


async def _replay_dead_letters(request: web.Request, who: AdminToken, query: Any, body: Any) -> Any:
    since = body.since.timestamp() if body.since else None
    return Count(replayed=await request.app[ADMIN].replay_dead(body.destination, since, who.name))


async def _list_destinations(request: web.Request, who: AdminToken, query: Any, body: Any) -> Any:
    return await request.app[ADMIN].destinations()


async def _enable_destination(request: web.Request, who: AdminToken, query: Any, body: Any) -> Any:
    return await request.app[ADMIN].enable(request.match_info["name"], who.name)


async def _get_stats(request: web.Request, who: AdminToken, query: Any, body: Any) -> Any:
    return await request.app[ADMIN].stats()


OPERATIONS = (
    Operation(
        "GET", "/events", _list_events, "Inbound webhooks, newest first", EventPage, EventQuery
    ),
    Operation(
        "GET",
        "/events/{id}",
        _get_event,
        "One inbound webhook, its payload and jobs",
        EventDetail,
        not_found=True,
    ),
    Operation(
        "POST",
        "/events/{id}/replay",
        _replay_event,
        "Route an event again",
        Replayed,
        body=ReplayEvent,
        operator=True,
        not_found=True,
    ),
    Operation(
        "GET",
        "/bookings/{id}",
        _get_booking,
        "A booking's snapshot and timeline",
        BookingView,
        not_found=True,
    ),
    Operation(
        "POST",
        "/bookings/{id}/outcome",
        _record_outcome,
        "Record a meeting's outcome (emits meeting_outcome_changed)",
        Recorded,
        body=OutcomeIn,
        operator=True,
        not_found=True,
    ),
    Operation(
        "GET", "/jobs", _list_jobs, "Jobs, the latest to enter their state first", JobPage, JobQuery
    ),
    Operation("GET", "/jobs/{id}", _get_job, "One job and its attempts", JobView, not_found=True),
    Operation(
        "POST",
        "/jobs/{id}/replay",
        _replay_job,
        "Make a dead letter due again",
        Replayed,
        operator=True,
        not_found=True,
    ),
    Operation(
        "GET",
        "/dead-letters",
        _list_dead_letters,
        "Dead letters, oldest first",
        list[JobView],
        DeadLetterQuery,
    ),
    Operation(
        "POST",
        "/dead-letters/replay",
        _replay_dead_letters,
        "Replay every dead letter matching",
        Count,
        body=DeadReplay,
        operator=True,
    ),
    Operation(
        "GET",
        "/destinations",
        _list_destinations,
        "Each destination's health",
        list[DestinationView],
    ),
    Operation(
        "POST",
        "/destinations/{name}/enable",
        _enable_destination,
        "Close a destination's circuit and lift a disable",
        DestinationView,
        operator=True,
        not_found=True,
    ),
    Operation(
        "GET", "/stats", _get_stats, "Queue depth, oldest due job, deliveries per minute", StatsView
    ),
)


# --- plumbing -------------------------------------------------------------------------


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(data),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def error_response(error: AdminError) -> web.Response:
    headers = {"WWW-Authenticate": 'Bearer realm="hub"'} if error.status == 401 else None
    return _json(error.to_json(), error.status, headers)


def authenticate(request: web.Request) -> AdminToken:
    """The token a request carries, or Unauthorized."""
    values = request.headers.getall("Authorization", [])
    if len(values) != 1:
        raise Unauthorized(
            "send one Authorization: Bearer <token> header" if values else "a token is required"
        )
    scheme, _, token = values[0].partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("expected Authorization: Bearer <token>")
    who = request.app[CONFIG].admin.who(token)
    if who is None:
        raise Unauthorized("the token is not valid")
    return who


def _validation(error: ValidationError, where: str | None = None) -> BadRequest:
    first = error.errors()[0]
    parameter = ".".join(str(p) for p in first["loc"]) or where
    if where == "body" and first["loc"]:
        parameter = f"body.{parameter}"
    detail = "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or where}: {e['msg']}" for e in error.errors()
    )
    return BadRequest(detail, parameter)


def _query(request: web.Request, model: type[BaseModel] | None) -> Any:
    params: dict[str, str] = {}
    for name in request.query:
        values = request.query.getall(name)
        if len(values) > 1:
            raise BadRequest(f"{name} is given {len(values)} times; give it once", name)
        params[name] = values[0]
    if model is None:
        if params:
            raise BadRequest(f"unknown parameter {next(iter(params))!r}", next(iter(params)))
        return None
    try:
        return model.model_validate(params)
    except ValidationError as error:
        raise _validation(error) from None


async def _body(request: web.Request, model: type[BaseModel] | None) -> Any:
    if model is None:
        return None
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[CONFIG].server.max_body
        raise BodyTooLarge(f"the body is larger than {limit} bytes", "body") from None
    if not raw.strip():
        data: Any = {}
    else:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            raise BadRequest(f"the body is not valid JSON: {error}", "body") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object", "body")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise _validation(error, "body") from None


def _dump(answer: Any) -> Any:
    if isinstance(answer, BaseModel):
        return answer.model_dump(mode="json")
    if isinstance(answer, list):
        return [_dump(item) for item in answer]
    return answer


def _endpoint(operation: Operation) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        try:
            who = authenticate(request)
            if operation.operator and who.role != "operator":
                raise Forbidden(f"the token {who.name!r} is a viewer's; this needs an operator")
            query = _query(request, operation.query)
            body = await _body(request, operation.body)
            answer = await operation.handler(request, who, query, body)
        except AdminError as error:
            return error_response(error)
        except StoreError as error:
            log.error("admin.store_unavailable", path=request.path, error=str(error))
            return _json({"error": "store_unavailable", "detail": str(error)}, 503)
        return _json(_dump(answer))

    handle.__name__ = operation.name
    return handle


async def openapi(request: web.Request) -> web.Response:
    return _json(openapi_document())


async def _not_found(request: web.Request) -> web.Response:
    return error_response(NotFound(f"no such endpoint: {request.path[:200]}"))


def add_api_routes(app: web.Application) -> None:
    for operation in OPERATIONS:
        app.router.add_route(operation.method, "/api/v1" + operation.path, _endpoint(operation))
    app.router.add_get("/api/v1/openapi.json", openapi)
    app.router.add_route("*", "/api/{tail:.*}", _not_found)


# --- OpenAPI --------------------------------------------------------------------------


def _models() -> list[tuple[type[BaseModel], Any]]:
    """Every model of the document: answers as they are sent, bodies as they are read."""
    found: list[tuple[type[BaseModel], Any]] = [(ErrorBody, "serialization")]
    for operation in OPERATIONS:
        answer = getattr(operation.answer, "__args__", (operation.answer,))[0]
        for model, mode in ((answer, "serialization"), (operation.body, "validation")):
            if model is not None and (model, mode) not in found:
                found.append((model, mode))
    return found


def _answer_schema(answer: Any) -> dict[str, Any]:
    inner = getattr(answer, "__args__", None)
    if inner:
        return {"type": "array", "items": {"$ref": f"#/components/schemas/{inner[0].__name__}"}}
    return {"$ref": f"#/components/schemas/{answer.__name__}"}


def _parameter_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter's schema: a parameter left out is the ``None`` of its model."""
    options = schema.get("anyOf")
    if options:
        kept = [o for o in options if o.get("type") != "null"]
        merged = {k: v for k, v in schema.items() if k not in ("anyOf", "default")}
        if len(kept) == 1:
            return {**kept[0], **merged}
        return {**merged, "anyOf": kept}
    return {k: v for k, v in schema.items() if k != "default" or v is not None}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the admin API, generated from its models."""
    _, definitions = models_json_schema(_models(), ref_template="#/components/schemas/{model}")
    schemas = definitions.get("$defs", {})
    paths: dict[str, dict[str, Any]] = {}
    for operation in OPERATIONS:
        parameters: list[dict[str, Any]] = []
        for name in ("id", "name"):
            if "{" + name + "}" in operation.path:
                parameters.append(
                    {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                )
        if operation.query is not None:
            query_schema = operation.query.model_json_schema()
            for name, schema in query_schema["properties"].items():
                parameters.append(
                    {
                        "name": name,
                        "in": "query",
                        "required": name in query_schema.get("required", []),
                        "description": schema.get("description", ""),
                        "schema": _parameter_schema(schema),
                    }
                )
        responses: dict[str, Any] = {
            "200": {
                "description": "OK",
                "content": {"application/json": {"schema": _answer_schema(operation.answer)}},
            },
            "400": _error("A malformed parameter or body; `parameter` names it"),
            "401": _error("No token, or not a valid one"),
            "503": _error("The store cannot be reached"),
        }
        if operation.operator:
            responses["403"] = _error("A viewer's token on an operator's action")
        if operation.not_found:
            responses["404"] = _error("No such resource")
        if operation.body is not None:
            responses["413"] = _error("The body is larger than server.max_body")
        if operation.name == "replay_job":
            responses["409"] = _error("The job is not a dead letter")
        spec: dict[str, Any] = {
            "operationId": operation.name,
            "summary": operation.summary,
            "parameters": parameters,
            "responses": responses,
        }
        if operation.body is not None:
            spec["requestBody"] = {
                "required": False,
                "content": {
                    "application/json": {
                        "schema": {"$ref": f"#/components/schemas/{operation.body.__name__}"}
                    }
                },
            }
        paths.setdefault("/api/v1" + operation.path, {})[operation.method.lower()] = spec
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "hub admin API",
            "version": __version__,
            "description": "Events, bookings, jobs, dead letters and destinations of the hub. "
            "Send Authorization: Bearer <token>; viewers may GET, operators may also POST.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
