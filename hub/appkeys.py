"""Every key of the aiohttp application's typed storage."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import aiohttp
import pluggy
from aiohttp import web

from hub.clock import Clock
from hub.config import Config
from hub.connector import DestinationConnector, SourceConnector
from hub.deadlines import Deadlines
from hub.metrics import Metrics

if TYPE_CHECKING:
    pass

__all__ = [
    "ADMIN",
    "CLOCK",
    "CONFIG",
    "DESTINATIONS",
    "HTTP",
    "METRICS",
    "PLUGINS",
    "READING",
    "READ_LIMITS",
    "SOURCES",
    "STORE",
    "WORKER",
]

CONFIG = web.AppKey("config", Config)
PLUGINS = web.AppKey("plugins", pluggy.PluginManager)
CLOCK = web.AppKey("clock", Clock)
METRICS = web.AppKey("metrics", Metrics)
SOURCES = web.AppKey("sources", dict[str, SourceConnector])
STORE = web.AppKey("store", "Store")
HTTP = web.AppKey("http", aiohttp.ClientSession)
DESTINATIONS = web.AppKey("destinations", dict[str, DestinationConnector])
WORKER = web.AppKey("worker", "Worker | None")
ADMIN = web.AppKey("admin", "AdminService")
READING = web.AppKey("reading", asyncio.Semaphore)  # slots for webhook bodies being read
READ_LIMITS = web.AppKey("read_limits", Deadlines)  # the body_timeout of each body being read
