"""What an operator does from the command line: check settings, read dead letters,
replay, and look after destinations. Each function writes to ``out`` and returns an exit
code; ``hub.cli`` wires them to commands."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TextIO

import orjson

from hub.config import Config
from hub.demo import demo_secrets
from hub.errors import StoreError
from hub.ids import new_id
from hub.plugins import destination_connectors
from hub.store import JobInfo, Store
from hub.units import parse_duration

__all__ = [
    "check_settings",
    "destinations",
    "dlq_list",
    "dlq_show",
    "enable_destination",
    "parse_since",
    "replay",
]


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


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


def _dead_line(job: JobInfo) -> str:
    tried = sum(1 for a in job.attempts if a.get("outcome") in ("done", "retry", "dead"))
    return (
        f"{job.id}  {job.destination or job.kind:<14} {job.event_id or '-':<30} "
        f"{_when(job.finished_at)}  {tried:>2} attempts  {job.reason or ''}"
    )


async def dlq_list(
    store: Store,
    out: TextIO,
    *,
    destination: str | None,
    since: float | None,
    limit: int,
    as_json: bool,
) -> int:
    jobs = await store.dead_letters(limit=limit, destination=destination, since=since)
    if as_json:
        out.write(orjson.dumps([j.to_json() for j in jobs]).decode() + "\n")
        return 0
    if not jobs:
        print("no dead letters", file=out)
    for job in jobs:
        print(_dead_line(job), file=out)
    return 0


async def dlq_show(store: Store, out: TextIO, job_id: str) -> int:
    job = await store.get_job(job_id)
    if job is None:
        print(f"no job {job_id}", file=out)
        return 1
    out.write(orjson.dumps(job.to_json(), option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


async def replay(
    store: Store,
    out: TextIO,
    ids: Sequence[str],
    *,
    destination: str | None,
    since: float | None,
    resend: bool,
    now: float,
) -> int:
    """Replay dead jobs (``job_…``) and accepted events (``evt_…``, routed again); with
    ``destination``/``since``, every dead job matching them. Replaying twice does not make
    two jobs."""
    job_ids = [i for i in ids if not i.startswith("evt_")]
    event_ids = [i for i in ids if i.startswith("evt_")]
    if destination is not None or since is not None:
        dead = await store.dead_letters(limit=1_000_000, destination=destination, since=since)
        job_ids += [job.id for job in dead]
    failed = 0
    for job_id in job_ids:
        if await store.replay(job_id, now):
            print(f"{job_id}: due again", file=out)
        else:
            failed += 1
            print(f"{job_id}: not a dead letter (replayed already, or unknown)", file=out)
    for event_id in event_ids:
        again = await store.redispatch(event_id, new_id("job", now), now, resend)
        if again.job_id is None:
            failed += 1
            print(f"{event_id}: no such event is stored (past the retention?)", file=out)
        elif again.created:
            what = "every route" if resend else "routes it has not been sent to"
            print(f"{event_id}: routed again ({what}) as {again.job_id}", file=out)
        else:
            print(f"{event_id}: a replay is pending already: {again.job_id}", file=out)
    if not ids and destination is None and since is None:
        print("nothing to replay: name ids, or --destination / --since", file=out)
        return 2
    return 1 if failed else 0


async def destinations(config: Config, store: Store, out: TextIO) -> int:
    for state in await store.destination_states(sorted(config.destinations)):
        extra = ""
        if state.state == "open":
            extra = f" until {_when(state.open_until)}"
        print(
            f"{state.name:<16} {state.state}{extra}  in flight {state.in_flight}  "
            f"window {state.window_ok} ok / {state.window_failed} failed"
            + (f"  ({state.reason}, {_when(state.changed_at)})" if state.reason else ""),
            file=out,
        )
    return 0


async def enable_destination(config: Config, store: Store, out: TextIO, name: str) -> int:
    if name not in config.destinations:
        print(f"no destination named {name!r}", file=out)
        return 2
    await store.enable_destination(name, time.time())
    print(f"{name}: enabled", file=out)
    return 0
