"""Mounting the operators' window on the application: the service, ``/api/v1`` and
``/console/``. Only when ``admin.tokens`` names at least one token; otherwise both
answer 404."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from hub.admin.api import add_api_routes
from hub.admin.console import add_console_routes
from hub.admin.service import AdminService
from hub.appkeys import ADMIN, CLOCK, CONFIG, STORE

__all__ = ["add_admin"]


async def _service(app: web.Application) -> AsyncIterator[None]:
    app[ADMIN] = AdminService(app[CONFIG], app[STORE], app[CLOCK])
    yield


def add_admin(app: web.Application) -> None:
    app.cleanup_ctx.append(_service)
    add_api_routes(app)
    add_console_routes(app)
