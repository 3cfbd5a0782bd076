"""The web console, ``/console/``: server-rendered pages over the service layer.

Signing in with an admin token sets a signed session cookie (HttpOnly, SameSite=Strict,
expiring after ``admin.session_ttl``) that names the token, never holds it. Every form
carries the session's CSRF token. A viewer sees no button that changes anything, and the
actions refuse a viewer's session all the same.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import structlog
from aiohttp import web
from itsdangerous import BadSignature, URLSafeTimedSerializer
from jinja2 import Environment, PackageLoader, select_autoescape
from pydantic import ValidationError

from hub.admin.models import EventQuery
from hub.admin.service import AdminService
from hub.admin.settings import AdminToken
from hub.appkeys import ADMIN, CONFIG
from hub.errors import AdminError, BadRequest, Forbidden, StoreError

__all__ = ["add_console_routes"]

log = structlog.get_logger("hub.admin")

COOKIE = "hub_session"
_templates = Environment(
    loader=PackageLoader("hub.admin", "templates"),
    autoescape=select_autoescape(default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _utc(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _local(moment: datetime | None, zone: str | None) -> str:
    if moment is None or not zone:
        return ""
    try:
        return moment.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z")
    except (ValueError, KeyError):
        return ""


_templates.filters["utc"] = _utc
_templates.filters["local"] = _local


class Session:
    def __init__(self, token: AdminToken, csrf: str) -> None:
        self.token = token
        self.csrf = csrf

    @property
    def can_act(self) -> bool:
        return self.token.role == "operator"


def _serializer(request: web.Request) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(request.app[CONFIG].admin.session_key(), salt="console")


def _session(request: web.Request) -> Session | None:
    value = request.cookies.get(COOKIE)
    if not value:
        return None
    admin = request.app[CONFIG].admin
    try:
        data = _serializer(request).loads(value, max_age=admin.session_ttl.total_seconds())
    except BadSignature:
        return None
    token = next((t for t in admin.tokens if t.name == data.get("name")), None)
    return Session(token, str(data.get("csrf", ""))) if token else None


def _render(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    body = _templates.get_template(template).render(
        session=context.pop("session", None), path=request.path, **context
    )
    return web.Response(
        text=body, status=status, content_type="text/html", charset="utf-8", headers=_HEADERS
    )


def _redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location, **_HEADERS})


Page = Callable[[web.Request, Session, AdminService], Awaitable[web.Response]]


def _page(handler: Page, *, action: bool = False) -> Callable[[web.Request], Awaitable[Any]]:
    """A signed-in page: no session sends to the sign-in; an action also needs the form's
    CSRF token and an operator."""

    async def handle(request: web.Request) -> web.StreamResponse:
        session = _session(request)
        if session is None:
            if action:
                return _render(request, "error.html", 401, message="Sign in first.")
            return _redirect("/console/login")
        try:
            if action:
                form = await request.post()
                sent = str(form.get("csrf", ""))
                if not sent or not hmac.compare_digest(sent, session.csrf):
                    raise Forbidden("the form's CSRF token is missing or wrong; reload the page")
                if not session.can_act:
                    raise Forbidden(f"{session.token.name} is a viewer: viewers cannot change it")
            return await handler(request, session, request.app[ADMIN])
        except AdminError as error:
            return _render(
                request, "error.html", error.status, session=session, message=error.detail
            )
        except StoreError as error:
            log.error("console.store_unavailable", path=request.path, error=str(error))
            return _render(
                request, "error.html", 503, session=session, message="The store is unavailable."
            )

    return handle


# --- sign-in ---------------------------------------------------------------------------


async def login_form(request: web.Request) -> web.Response:
    csrf = _serializer(request).dumps({"login": secrets.token_hex(8)})
    return _render(request, "login.html", csrf=csrf)


async def login(request: web.Request) -> web.Response:
    form = await request.post()
    try:
        _serializer(request).loads(str(form.get("csrf", "")), max_age=3600)
    except BadSignature:
        return _render(request, "login.html", 403, error="The form expired; try again.", csrf="")
    token = request.app[CONFIG].admin.who(str(form.get("token", "")))
    if token is None:
        log.warning("console.sign_in_refused", remote=request.remote)
        csrf = _serializer(request).dumps({"login": secrets.token_hex(8)})
        return _render(request, "login.html", 401, error="That token is not valid.", csrf=csrf)
    log.info("console.signed_in", token=token.name)
    cookie = _serializer(request).dumps({"name": token.name, "csrf": secrets.token_urlsafe(24)})
    response = _redirect("/console/")
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=int(request.app[CONFIG].admin.session_ttl.total_seconds()),
        path="/console",
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )
    return response


async def logout(request: web.Request) -> web.Response:
    session = _session(request)
    form = await request.post()
    sent = str(form.get("csrf", ""))
    if session is not None and not hmac.compare_digest(sent, session.csrf):
        return _render(request, "error.html", 403, session=session, message="Reload the page.")
    response = _redirect("/console/login")
    response.del_cookie(COOKIE, path="/console")
    return response


# --- pages -----------------------------------------------------------------------------


async def overview(request: web.Request, session: Session, service: AdminService) -> web.Response:
    stats = await service.stats()
    destinations = await service.destinations()
    per_minute = stats.deliveries_per_minute
    recent = per_minute[-5:]
    return _render(
        request,
        "overview.html",
        session=session,
        stats=stats,
        destinations=destinations,
        dead=sum(d.dead for d in destinations),
        last_hour={k: sum(getattr(r, k) for r in per_minute) for k in ("done", "retry", "dead")},
        per_minute=sum(r.done for r in recent) / max(len(recent), 1),
    )


async def events(request: web.Request, session: Session, service: AdminService) -> web.Response:
    fields = {k: v for k, v in request.query.items() if v.strip()}
    try:
        query = EventQuery.model_validate(fields)
    except ValidationError as error:
        first = error.errors()[0]
        raise BadRequest(f"{first['loc'][0]}: {first['msg']}") from None
    page = await service.events(query)
    return _render(request, "events.html", session=session, page=page, query=query, filters=fields)


async def event(request: web.Request, session: Session, service: AdminService) -> web.Response:
    detail = await service.event(request.match_info["id"])
    payload = orjson.dumps(detail.payload, option=orjson.OPT_INDENT_2).decode()
    canonical = orjson.dumps(detail.canonical, option=orjson.OPT_INDENT_2).decode()
    return _render(
        request,
        "event.html",
        session=session,
        event=detail,
        payload=payload,
        canonical=canonical,
    )


async def booking(request: web.Request, session: Session, service: AdminService) -> web.Response:
    view = await service.booking(request.match_info["id"])
    return _render(
        request,
        "booking.html",
        session=session,
        booking=view,
        zone=view.snapshot.get("time_zone"),
        now=datetime.fromtimestamp(service.clock.now(), UTC),
    )


async def dead_letters(
    request: web.Request, session: Session, service: AdminService
) -> web.Response:
    destination = request.query.get("destination") or None
    jobs = await service.dead_letters(destination, None, 200)
    return _render(
        request,
        "dead_letters.html",
        session=session,
        jobs=jobs,
        destination=destination,
        destinations=sorted(request.app[CONFIG].destinations),
        notice=request.query.get("notice"),
    )


async def destinations(
    request: web.Request, session: Session, service: AdminService
) -> web.Response:
    return _render(
        request,
        "destinations.html",
        session=session,
        destinations=await service.destinations(),
        notice=request.query.get("notice"),
    )


async def replay_event(
    request: web.Request, session: Session, service: AdminService
) -> web.Response:
    form = await request.post()
    answer = await service.replay_event(
        request.match_info["id"], form.get("resend") == "1", session.token.name
    )
    return _redirect(f"/console/events/{answer.id}")


async def replay_job(request: web.Request, session: Session, service: AdminService) -> web.Response:
    await service.replay_job(request.match_info["id"], session.token.name)
    return _redirect("/console/dead-letters?notice=replayed")


async def replay_all(request: web.Request, session: Session, service: AdminService) -> web.Response:
    form = await request.post()
    destination = str(form.get("destination", "")) or None
    count = await service.replay_dead(destination, None, session.token.name)
    return _redirect(f"/console/dead-letters?notice=replayed+{count}")


async def enable(request: web.Request, session: Session, service: AdminService) -> web.Response:
    await service.enable(request.match_info["name"], session.token.name)
    return _redirect("/console/destinations?notice=enabled")


async def home(request: web.Request) -> web.Response:
    return _redirect("/console/overview" if _session(request) else "/console/login")


async def stylesheet(request: web.Request) -> web.Response:
    css = _templates.loader.get_source(_templates, "console.css")[0]  # type: ignore[union-attr]
    return web.Response(
        text=css, content_type="text/css", headers={"Cache-Control": "max-age=3600"}
    )


def add_console_routes(app: web.Application) -> None:
    router = app.router
    router.add_get("/console", home)
    router.add_get("/console/", home)
    router.add_get("/console/console.css", stylesheet)
    router.add_get("/console/login", login_form)
    router.add_post("/console/login", login)
    router.add_post("/console/logout", logout)
    router.add_get("/console/overview", _page(overview))
    router.add_get("/console/events", _page(events))
    router.add_get("/console/events/{id}", _page(event))
    router.add_post("/console/events/{id}/replay", _page(replay_event, action=True))
    router.add_get("/console/bookings/{id}", _page(booking))
    router.add_get("/console/dead-letters", _page(dead_letters))
    router.add_post("/console/dead-letters/replay", _page(replay_all, action=True))
    router.add_post("/console/jobs/{id}/replay", _page(replay_job, action=True))
    router.add_get("/console/destinations", _page(destinations))
    router.add_post("/console/destinations/{name}/enable", _page(enable, action=True))
