"""The operators' commands (``hub dlq``, ``replay``, ``destinations``, ``events``,
``bookings``) over the service layer the admin API uses. Each writes to ``out`` and
returns an exit code; times print in UTC, or as JSON with ``as_json``. A request the
service refuses raises its ``AdminError``; ``hub.cli`` prints it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson
from pydantic import BaseModel

from hub.admin.models import EventQuery, JobView
from hub.admin.service import AdminService
from hub.errors import Conflict, NotFound

__all__ = [
    "bookings_show",
    "destinations",
    "dlq_list",
    "dlq_show",
    "enable_destination",
    "events_list",
    "events_show",
    "replay",
]


def when(moment: datetime | None) -> str:
    """``2026-11-20 08:15:45 UTC``, or ``-``."""
    if moment is None:
        return "-"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _json(out: TextIO, data: Any) -> int:
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    elif isinstance(data, list):
        data = [d.model_dump(mode="json") if isinstance(d, BaseModel) else d for d in data]
    out.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def _tried(job: JobView) -> int:
    return sum(1 for a in job.attempts if a.outcome in ("done", "retry", "dead"))


def _job_line(job: JobView) -> str:
    return (
        f"{job.id}  {job.destination or job.kind:<14} {job.event_id or '-':<30} "
        f"{when(job.finished_at)}  {_tried(job):>2} attempts  {job.reason or ''}"
    )


async def dlq_list(
    service: AdminService,
    out: TextIO,
    *,
    destination: str | None,
    since: float | None,
    limit: int,
    as_json: bool,
) -> int:
    jobs = await service.dead_letters(destination, since, limit)
    if as_json:
        return _json(out, jobs)
    if not jobs:
        print("no dead letters", file=out)
    for job in jobs:
        print(_job_line(job), file=out)
    return 0


def _job_text(job: JobView, out: TextIO) -> None:
    rows = [
        ("job", job.id),
        ("kind", job.kind),
        ("state", job.state),
        ("destination", job.destination or "-"),
        ("route", job.route or "-"),
        ("event", job.event_id or "-"),
        ("booking", job.booking or "-"),
        ("created", when(job.created_at)),
        ("due", when(job.due_at)),
        ("finished", when(job.finished_at)),
    ]
    if job.reason:
        rows.append(("reason", job.reason))
    if job.waits_behind:
        rows.append(("waits behind", job.waits_behind))
    for name, value in rows:
        print(f"{name:<13}{value}", file=out)
    print(f"attempts     {_tried(job)}", file=out)
    for attempt in job.attempts:
        took = f"{attempt.duration_ms:.0f} ms" if attempt.duration_ms is not None else ""
        status = f"HTTP {attempt.status}" if attempt.status is not None else ""
        print(
            f"  {attempt.number or '':>3}  {when(attempt.started_at)}  {attempt.outcome:<8} "
            f"{took:>8}  {status:<8} {attempt.error or ''}".rstrip(),
            file=out,
        )


async def dlq_show(service: AdminService, out: TextIO, job_id: str, *, as_json: bool) -> int:
    job = await service.job(job_id)
    if as_json:
        return _json(out, job)
    _job_text(job, out)
    if job.message is not None:
        print("message", file=out)
        out.write(orjson.dumps(job.message, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


async def replay(
    service: AdminService,
    out: TextIO,
    ids: Sequence[str],
    *,
    destination: str | None,
    since: float | None,
    resend: bool,
    who: str = "cli",
) -> int:
    """Replay dead jobs (``job_…``) and accepted events (``evt_…``, routed again); with
    ``destination``/``since``, every dead job matching them. Replaying twice does not make
    two jobs."""
    if not ids and destination is None and since is None:
        print("nothing to replay: name ids, or --destination / --since", file=out)
        return 2
    failed = 0
    for item in ids:
        try:
            if item.startswith("evt_"):
                answer = await service.replay_event(item, resend, who)
                print(f"{item}: {answer.detail}: {answer.job_id}", file=out)
            else:
                await service.replay_job(item, who)
                print(f"{item}: due again", file=out)
        except NotFound:
            failed += 1
            what = "no such event is stored (past the retention?)"
            if not item.startswith("evt_"):
                what = "no such job (past the retention, or unknown)"
            print(f"{item}: {what}", file=out)
        except Conflict as error:
            failed += 1
            print(f"{item}: not a dead letter ({error})", file=out)
    if destination is not None or since is not None:
        count = await service.replay_dead(destination, since, who)
        print(f"{count} dead letters due again", file=out)
    return 1 if failed else 0


async def destinations(service: AdminService, out: TextIO, *, as_json: bool) -> int:
    views = await service.destinations()
    if as_json:
        return _json(out, views)
    for d in views:
        state = d.state + (f" until {when(d.open_until)}" if d.open_until else "")
        print(
            f"{d.name:<16} {state:<12} in flight {d.in_flight}  due {d.due}  "
            f"blocked {d.blocked}  dead {d.dead}  last ok {when(d.last_success)}  "
            f"last failure {when(d.last_failure)}"
            + (f"  ({d.reason}, {when(d.changed_at)})" if d.reason else ""),
            file=out,
        )
    return 0


async def enable_destination(service: AdminService, out: TextIO, name: str) -> int:
    view = await service.enable(name, "cli")
    print(f"{view.name}: enabled ({view.state})", file=out)
    return 0


async def events_list(service: AdminService, out: TextIO, query: EventQuery, as_json: bool) -> int:
    page = await service.events(query)
    if as_json:
        return _json(out, page)
    if not page.items:
        print("no events", file=out)
    for e in page.items:
        jobs = ", ".join(f"{n} {state}" for state, n in sorted(e.jobs.items())) or "no jobs"
        print(
            f"{e.id}  {when(e.received_at)}  {e.source:<10} {e.name or '-':<24} "
            f"{','.join(e.types) or '-':<22} {e.booking or '-':<36}  {jobs}",
            file=out,
        )
    if page.next_cursor:
        print(f"more: --cursor {page.next_cursor}", file=out)
    return 0


async def events_show(service: AdminService, out: TextIO, event_id: str, as_json: bool) -> int:
    event = await service.event(event_id)
    if as_json:
        return _json(out, event)
    print(f"event        {event.id}", file=out)
    print(f"source       {event.source} ({event.name or '-'})", file=out)
    print(f"received     {when(event.received_at)}", file=out)
    print(f"types        {', '.join(event.types) or '-'}", file=out)
    print(f"booking      {event.booking or '-'}", file=out)
    print("jobs", file=out)
    for job in event.job_list:
        print(
            f"  {job.id}  {job.kind:<8} {job.state:<8} {job.destination or '-':<14} "
            f"{job.route or '-':<16} due {when(job.due_at)}  {_tried(job)} attempts",
            file=out,
        )
    print("payload", file=out)
    out.write(orjson.dumps(event.payload, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


async def bookings_show(service: AdminService, out: TextIO, booking_id: str, as_json: bool) -> int:
    booking = await service.booking(booking_id)
    if as_json:
        return _json(out, booking)
    snap = booking.snapshot
    print(f"booking      {booking.uid} (sequence {booking.sequence})", file=out)
    print(f"status       {snap.get('status', '-')}", file=out)
    print(f"meeting      {(snap.get('meeting') or {}).get('name') or '-'}", file=out)
    print(f"starts       {snap.get('start', '-')}  ({snap.get('time_zone') or 'UTC'})", file=out)
    print("timeline", file=out)
    for entry in booking.timeline:
        if entry.kind == "event":
            what = f"event    {entry.event_id}  {', '.join(entry.types)} ({entry.name or '-'})"
        elif entry.kind == "message":
            what = f"message  {entry.job_id}  to {entry.destination} ({entry.route}) {entry.state}"
        else:
            what = (
                f"trigger  {entry.job_id}  {', '.join(entry.types)} ({entry.route}) "
                f"{entry.state}, local {entry.local_time}"
            )
        print(f"  {when(entry.at)}  {what}", file=out)
    return 0
