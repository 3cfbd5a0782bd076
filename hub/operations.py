"""What ``hub check`` checks, and the times operators give on the command line. The
commands that read and act on the store live in ``hub.admin.commands``."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TextIO

from hub.config import Config
from hub.demo import demo_secrets
from hub.errors import StoreError
from hub.plugins import destination_connectors
from hub.store import Store
from hub.units import parse_duration

__all__ = ["check_settings", "parse_since"]


def parse_since(value: str, now: float) -> float:
    """``2h`` (that long ago) or an ISO 8601 time."""
    try:
        return now - parse_duration(value).total_seconds()
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"expected a duration such as 2h or a time such as 2026-11-20T08:00Z, got {value!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


async def check_settings(config: Config, store: Store, pm: object, out: TextIO) -> list[str]:
    """Warnings about settings that put accepted events at risk; [] when there are none."""
    if config.store.embedded:
        print(
            f"note: the store is embedded (data in {config.store.path}): it serves this "
            "machine only. In production, and for hub processes on several machines, set "
            "store.url to a Redis, e.g. redis://redis:6379/0 (HUB_STORE in the sample).",
            file=out,
        )
    warnings = []
    try:
        settings = await store.settings()
    except StoreError as error:
        warnings.append(f"cannot reach the store to check its settings: {error}")
        settings = {}
    policy = settings.get("maxmemory-policy")
    if policy and policy != "noeviction":
        warnings.append(
            f"Redis maxmemory-policy is {policy}: it can evict queue keys under memory "
            "pressure; set maxmemory-policy noeviction"
        )
    if settings.get("appendonly") == "no":
        warnings.append(
            "Redis appendonly is off: a Redis restart loses every accepted webhook not yet "
            "delivered; set appendonly yes"
        )
    demo = demo_secrets({"sources": config.sources, "destinations": config.destinations})
    if demo:
        warnings.append(
            f"demo secrets (demo.env) in {', '.join(demo)}: anyone who has read demo.env can "
            "sign webhooks to this hub; set real ones before real traffic"
        )
    classes = destination_connectors(pm)  # type: ignore[arg-type]
    for name, destination in config.destinations.items():
        cls = classes[destination.connector]  # type: ignore[attr-defined]
        for warning in cls.check(destination, time.time()):
            warnings.append(f"destinations.{name}: {warning}")
    for warning in warnings:
        print(f"warning: {warning}", file=out)
    return warnings
