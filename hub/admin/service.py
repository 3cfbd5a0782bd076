"""The service layer of the operators' window: one read side, and the few actions, behind
the admin API, the console and the ``hub`` commands. It answers with the models of
``hub.admin.models``; a request it cannot answer raises an ``AdminError``."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
import structlog

from hub.admin.models import (
    AttemptView,
    BookingView,
    DestinationView,
    EventDetail,
    EventPage,
    EventQuery,
    EventView,
    JobPage,
    JobQuery,
    JobView,
    RateView,
    Replayed,
    StatsView,
    TimelineEntry,
    moment,
)
from hub.admin.outcomes import OPERATOR, outcome_body
from hub.clock import Clock
from hub.config import Config
from hub.errors import BadRequest, Conflict, NotFound
from hub.ids import new_id
from hub.routing import Router
from hub.store import JobInfo, Store
from hub.store.views import JOB_KINDS, JOB_STATES, EventFilter, EventRecord, JobFilter

__all__ = ["AdminService"]

log = structlog.get_logger("hub.admin")


def _ts(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def _attempt(record: dict[str, Any]) -> AttemptView:
    return AttemptView(
        number=record.get("number"),
        started_at=moment(record.get("started_at")),
        duration_ms=record.get("duration_ms"),
        outcome=str(record.get("outcome", "")),
        status=record.get("status"),
        error=record.get("error"),
        response=record.get("response"),
    )


def _event(record: EventRecord) -> EventView:
    return EventView(
        id=record.id,
        source=record.source,
        received_at=moment(record.received_at),
        name=record.name,
        types=record.types,
        booking=record.booking,
        jobs=record.jobs,
    )


class AdminService:
    def __init__(self, config: Config, store: Store, clock: Clock) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.router = Router.from_config(config)

    def _destination(self, name: str | None, parameter: str = "destination") -> str | None:
        if name is not None and name not in self.config.destinations:
            known = ", ".join(sorted(self.config.destinations)) or "none"
            raise BadRequest(f"no destination named {name!r} (defined: {known})", parameter)
        return name

    def _audit(self, who: str, action: str, target: str, **details: Any) -> None:
        log.info("admin.action", token=who, action=action, target=target, **details)

    # --- jobs --------------------------------------------------------------------------

    async def _job_view(self, job: JobInfo, *, detail: bool = False) -> JobView:
        payload = job.payload
        event = payload.get("event") if isinstance(payload.get("event"), dict) else None
        booking = payload.get("booking") or ((event or {}).get("booking") or {}).get("uid")
        return JobView(
            id=job.id,
            kind=job.kind,
            state=job.state,
            destination=job.destination,
            route=payload.get("route"),
            event_id=job.event_id,
            booking=booking,
            due_at=moment(job.due_at) if job.state in ("due", "retry", "blocked") else None,
            created_at=moment(job.created_at),
            finished_at=moment(job.finished_at),
            reason=job.reason,
            waits_behind=await self.store.waits_behind(job),
            attempts=[_attempt(a) for a in job.attempts],
            message=payload.get("message") if detail else None,
        )

    async def jobs(self, query: JobQuery) -> JobPage:
        self._destination(query.destination)
        where = JobFilter(state=query.state, kind=query.kind, destination=query.destination)
        page = await self._cursor(self.store.jobs(where, query.cursor, query.limit))
        return JobPage(
            items=[await self._job_view(job) for job in page.items],
            next_cursor=page.next_cursor,
        )

    async def job(self, job_id: str) -> JobView:
        job = await self.store.get_job(job_id)
        if job is None:
            raise NotFound(f"no job {job_id!r}")
        return await self._job_view(job, detail=True)

    async def replay_job(self, job_id: str, who: str) -> Replayed:
        job = await self.store.get_job(job_id)
        if job is None:
            raise NotFound(f"no job {job_id!r}")
        if not await self.store.replay(job_id, self.clock.now()):
            raise Conflict(f"job {job_id} is {job.state}, not a dead letter")
        self._audit(who, "job.replay", job_id)
        return Replayed(id=job_id, replayed=True, job_id=job_id, detail="due again")

    async def dead_letters(
        self, destination: str | None, since: float | None, limit: int
    ) -> list[JobView]:
        self._destination(destination)
        jobs = await self.store.dead_letters(limit=limit, destination=destination, since=since)
        return [await self._job_view(job) for job in jobs]

    async def replay_dead(self, destination: str | None, since: float | None, who: str) -> int:
        self._destination(destination)
        now = self.clock.now()
        count = 0
        for job_id in await self.store.dead_letter_ids(destination, since):
            count += bool(await self.store.replay(job_id, now))
        self._audit(who, "dead_letters.replay", destination or "*", since=since, count=count)
        return count

    # --- events ------------------------------------------------------------------------

    @staticmethod
    async def _cursor(listing: Any) -> Any:
        try:
            return await listing
        except ValueError as error:
            raise BadRequest(str(error), "cursor") from None

    async def events(self, query: EventQuery) -> EventPage:
        where = EventFilter(
            source=query.source,
            type=query.type,
            booking=query.booking,
            email=query.email,
            since=_ts(query.since),
            until=_ts(query.until),
        )
        page = await self._cursor(self.store.events(where, query.cursor, query.limit))
        return EventPage(items=[_event(r) for r in page.items], next_cursor=page.next_cursor)

    async def event(self, event_id: str) -> EventDetail:
        record = await self.store.event_record(event_id)
        inbound = await self.store.get_event(event_id)
        if record is None or inbound is None:
            raise NotFound(f"no event {event_id!r} (unknown, or past the retention)")
        try:
            payload: Any = orjson.loads(inbound.body)
        except orjson.JSONDecodeError:
            payload = inbound.body.decode("utf-8", "replace")
        jobs = await self.store.event_jobs(event_id)
        canonical: dict[str, dict[str, Any]] = {}
        for job in jobs:
            event = job.payload.get("event")
            if isinstance(event, dict) and event.get("id"):
                event = {k: v for k, v in event.items() if k != "raw"}
                canonical.setdefault(event["id"], event)
        return EventDetail(
            **_event(record).model_dump(),
            payload=payload,
            canonical=list(canonical.values()),
            job_list=[await self._job_view(job, detail=True) for job in jobs],
        )

    async def replay_event(self, event_id: str, resend: bool, who: str) -> Replayed:
        now = self.clock.now()
        again = await self.store.redispatch(event_id, new_id("job", now), now, resend)
        if again.job_id is None:
            raise NotFound(f"no event {event_id!r} (unknown, or past the retention)")
        self._audit(who, "event.replay", event_id, resend=resend, job_id=again.job_id)
        if again.created:
            what = "every route" if resend else "routes it has not been sent to"
            return Replayed(
                id=event_id, replayed=True, job_id=again.job_id, detail=f"routed again ({what})"
            )
        return Replayed(
            id=event_id, replayed=False, job_id=again.job_id, detail="a replay is pending already"
        )

    # --- bookings ----------------------------------------------------------------------

    async def _booking(self, booking_id: str) -> tuple[str, Any]:
        stored = await self.store.get_booking(booking_id)
        if stored is None:
            stored = await self.store.booking_by_ref(booking_id)
        if stored is None:
            raise NotFound(f"no booking {booking_id!r}")
        return str(stored.snapshot.get("uid", booking_id)), stored

    async def booking(self, booking_id: str) -> BookingView:
        uid, stored = await self._booking(booking_id)
        zone = _zone(stored.snapshot.get("time_zone"))
        timeline: list[TimelineEntry] = []
        seen: set[str] = set()
        for record in await self.store.booking_events(uid):
            timeline.append(
                TimelineEntry(
                    at=moment(record.received_at),
                    kind="event",
                    event_id=record.id,
                    types=record.types,
                    name=record.name,
                )
            )
            for job in await self.store.event_jobs(record.id):
                entry = self._timeline_job(job, zone)
                if entry is not None:
                    seen.add(job.id)
                    timeline.append(entry)
        from hub.model import Booking

        booking = Booking.model_validate(stored.snapshot)
        for route in self.router.timed:
            job = await self.store.scheduled(route.key(booking))
            if job is not None and job.id not in seen:
                entry = self._timeline_job(job, zone)
                if entry is not None:
                    timeline.append(entry)
        timeline.sort(key=lambda entry: entry.at)
        return BookingView(
            uid=uid, sequence=stored.sequence, snapshot=stored.snapshot, timeline=timeline
        )

    def _timeline_job(self, job: JobInfo, zone: ZoneInfo) -> TimelineEntry | None:
        if job.kind == "deliver":
            return TimelineEntry(
                at=moment(job.finished_at or job.created_at),
                kind="message",
                event_id=job.event_id,
                job_id=job.id,
                destination=job.destination,
                route=job.payload.get("route"),
                state=job.state,
            )
        if job.kind == "timer" and job.payload.get("timer") == "trigger":
            fires = job.payload.get("at") or job.due_at or job.created_at
            local = datetime.fromtimestamp(fires, zone)
            return TimelineEntry(
                at=moment(fires),
                kind="trigger",
                event_id=job.event_id,
                types=[str(job.payload.get("trigger"))],
                job_id=job.id,
                route=job.payload.get("route"),
                state=job.state,
                local_time=f"{local:%Y-%m-%d %H:%M} {zone.key}",
            )
        return None

    async def record_outcome(
        self, booking_id: str, outcome: str, note: str | None, who: str
    ) -> str:
        """Emit ``meeting_outcome_changed`` for a booking through the routes; returns the
        inbound event's id."""
        uid, stored = await self._booking(booking_id)
        now = self.clock.now()
        event_id = new_id("evt", now)
        body = outcome_body(stored.snapshot, outcome, note, who, now)
        accepted = await self.store.accept(
            OPERATOR, event_id, body, now, event_id, new_id("job", now), None
        )
        self._audit(who, "booking.outcome", uid, outcome=outcome, event_id=accepted.id)
        return accepted.id

    # --- destinations and stats --------------------------------------------------------

    async def destinations(self) -> list[DestinationView]:
        names = sorted(self.config.destinations)
        states = await self.store.destination_states(names)
        counts = await self.store.counts(names, self.clock.now())
        views = []
        for state in states:
            n = counts.destinations.get(state.name, {})
            last_error = None
            if state.last_fail_job:
                failed = await self.store.get_job(state.last_fail_job)
                errors = [a.get("error") for a in (failed.attempts if failed else [])]
                last_error = next((e for e in reversed(errors) if e), None)
            views.append(
                DestinationView(
                    name=state.name,
                    connector=self.config.destinations[state.name].connector,  # type: ignore[attr-defined]
                    state=state.state,
                    disabled=state.state == "disabled",
                    reason=state.reason,
                    changed_at=moment(state.changed_at),
                    open_until=moment(state.open_until) if state.state == "open" else None,
                    in_flight=state.in_flight,
                    due=n.get("due", 0) + n.get("retry", 0),
                    blocked=n.get("blocked", 0),
                    dead=n.get("dead", 0),
                    last_success=moment(state.last_ok),
                    last_failure=moment(state.last_fail),
                    last_error=last_error,
                )
            )
        return views

    async def enable(self, name: str, who: str) -> DestinationView:
        if name not in self.config.destinations:
            raise NotFound(f"no destination named {name!r}")
        await self.store.enable_destination(name, self.clock.now())
        self._audit(who, "destination.enable", name)
        return next(d for d in await self.destinations() if d.name == name)

    async def stats(self) -> StatsView:
        now = self.clock.now()
        counts = await self.store.counts([], now)
        rates = await self.store.delivery_rates(now, 60)
        return StatsView(
            jobs={
                state: {kind: counts.jobs[(state, kind)] for kind in JOB_KINDS}
                for state in JOB_STATES
            },
            oldest_due_seconds=max(0.0, now - counts.oldest_due) if counts.oldest_due else 0.0,
            deliveries_per_minute=[
                RateView(
                    minute=moment(r["minute"]),
                    done=r.get("done", 0),
                    retry=r.get("retry", 0),
                    dead=r.get("dead", 0),
                )
                for r in rates
            ],
        )


def _zone(name: Any) -> ZoneInfo:
    if isinstance(name, str) and name:
        with contextlib.suppress(ZoneInfoNotFoundError, ValueError):
            return ZoneInfo(name)
    return ZoneInfo("UTC")


def utc_now(clock: Clock) -> datetime:
    return datetime.fromtimestamp(clock.now(), UTC)
