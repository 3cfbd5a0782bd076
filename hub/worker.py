"""The worker: claims due jobs and runs them.

Two kinds of job run here. A **dispatch** job turns one accepted webhook into canonical
events (through its source connector), matches the routes, and enqueues one **deliver** job
per message, atomically with its own completion. A **deliver** job hands one message to
its destination connector; the outcome is done, a retry at a later time, or a dead letter.

``run()`` loops until ``stop()``; ``drain()`` runs until nothing is due at the clock's
current time, which is how tests move time: advance the clock, drain again.

Jobs reach it by claims, and by hand-over (see ``hub/store``): the store calls that make a
job due at once (intake's accept, a job's completion) bring it back claimed when the worker
has a free slot for it, which saves a claim's round trip and its wait for the next claim.
Slots promised to a call in flight are ``reserved`` until its answer comes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import traceback
from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import structlog

from hub import bookings, stages
from hub.bookings import Bookings
from hub.clock import Clock
from hub.config import WorkerConfig
from hub.connector import Delivery, DestinationConnector, NormalizeContext, SourceConnector
from hub.deadlines import Deadlines
from hub.errors import (
    NormalizeError,
    PermanentDelivery,
    RetryableDelivery,
    StoreError,
)
from hub.ics import IcsLinks
from hub.ids import new_id
from hub.metrics import Metrics
from hub.model import Booking, BookingEvent
from hub.outbound import RESPONSE_EXCERPT
from hub.retry import RetryPolicy
from hub.routing import Router
from hub.store import Attempt, Handoff, Health, InboundEvent, Job, NewJob, Recorded, Store
from hub.store.partitions import scope as partition_scope
from hub.store.views import EventNote

__all__ = ["Worker"]

log = structlog.get_logger(__name__)

# The shortest time between two claims. Under load, wake-ups (a webhook accepted, a job
# done) come faster than claims pay off: one claim per gap fetches all that became due
# meanwhile, for a few milliseconds more on the way through the queue.
CLAIM_GAP = 0.004


@dataclass
class _Plan:
    """What a dispatch or timer job leads to: jobs to enqueue, scheduled jobs to drop."""

    spawn: list[NewJob] = field(default_factory=list)
    unschedule: list[str] = field(default_factory=list)
    note: EventNote | None = None  # what a dispatch found, to index its inbound event


class _Failure(Exception):
    """Internal: an attempt failed; carries what to record and what to do next."""

    def __init__(
        self,
        error: str,
        *,
        permanent: bool,
        status: int | None = None,
        response: str | None = None,
        retry_after: float | None = None,
        health: Health | None = None,
        disable: str | None = None,
    ) -> None:
        super().__init__(error)
        self.error = error
        self.permanent = permanent
        self.status = status
        self.response = response
        self.retry_after = retry_after
        self.health = health  # what it says of the destination's health
        self.disable = disable  # why the destination must stop receiving, if it must

    def loggable(self) -> dict[str, Any]:
        """What a log line may say of it: the status, and the text only where the hub
        wrote it; else the type of what failed. A connector's, a server's or a library's
        text may quote personal data or a secret (an SMTP server's reply names the
        recipient, a validation error quotes the payload): it stays in the job's attempts,
        which the admin API shows, encrypted at rest with the store's keys."""
        cause = self.__cause__
        if cause is None:
            return {"error": self.error, "status": self.status}
        return {"error_type": type(cause).__name__, "status": self.status}


def _where(error: BaseException) -> str:
    """Where ``error`` was raised: file, line and function of its innermost frames, and
    not its message (a third party's text, see ``_Failure.loggable``)."""
    frames = traceback.extract_tb(error.__traceback__)[-3:]
    return " < ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(frames))


def _job_context(job: Job) -> dict[str, Any]:
    """What every log line of a job names: the job, its destination and route, its
    inbound event and its booking (as far as the job knows them before it runs)."""
    payload = job.payload
    event = payload.get("event") if isinstance(payload.get("event"), dict) else {}
    booking = payload.get("booking") or ((event or {}).get("booking") or {}).get("uid")
    return {
        "job_id": job.id,
        "kind": job.kind,
        "attempt": job.attempt,
        "destination": job.destination,
        "route": payload.get("route"),
        "event_id": job.event_id,
        "booking": booking,
    }


class _JobLog:
    """A job's log lines, each naming the job (``_job_context``); the context is made
    for a line that is written only (a dropped ``job.done`` costs next to nothing)."""

    __slots__ = ("_extra", "_job")

    def __init__(self, job: Job, extra: dict[str, Any] | None = None) -> None:
        self._job, self._extra = job, extra

    def bind(self, **extra: Any) -> _JobLog:
        return _JobLog(self._job, {**(self._extra or {}), **extra})

    def _line(self, level: int, method: str, event: str, fields: dict[str, Any]) -> None:
        # as the line itself would decide; through the proxy's cached logger (``bind()``),
        # not its ``__getattr__``, which fails a lookup and binds anew on every call
        if log.bind().is_enabled_for(level):
            context = _job_context(self._job)
            if self._extra:
                context.update(self._extra)
            getattr(log.bind(**context), method)(event, **fields)

    def debug(self, event: str, **fields: Any) -> None:
        self._line(logging.DEBUG, "debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._line(logging.INFO, "info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._line(logging.WARNING, "warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._line(logging.ERROR, "error", event, fields)

    def exception(self, event: str, **fields: Any) -> None:
        self._line(logging.ERROR, "exception", event, fields)


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


def _signature(event_id: str, route: str, destination: str, message: dict[str, Any]) -> str:
    """What a message is, so a replay of its event can tell it was sent before."""
    return "|".join(
        (event_id, route, destination, orjson.dumps(message, option=orjson.OPT_SORT_KEYS).decode())
    )


class _Room:
    """Slots of a worker promised to the jobs a store call may hand over: ``room`` in
    all, of which ``own`` are the slots of the jobs making the call (still running, so
    counted already), the rest set aside until the call has answered."""

    __slots__ = ("_aside", "_room", "_worker")

    def __init__(self, worker: Worker, room: int, own: int = 0) -> None:
        self._worker, self._room = worker, room
        self._aside = max(room - own, 0)

    def __enter__(self) -> Handoff | None:
        if not self._room:
            return None
        self._worker._reserved += self._aside
        return Handoff(self._room, self._worker.config.lease.total_seconds())

    def __exit__(self, *exc: object) -> None:
        self._worker._reserved -= self._aside  # nothing was set aside without room


class Worker:
    def __init__(
        self,
        *,
        store: Store,
        sources: dict[str, SourceConnector],
        destinations: dict[str, DestinationConnector],
        router: Router,
        config: WorkerConfig,
        clock: Clock,
        metrics: Metrics | None = None,
        rng: random.Random | None = None,
        ics_links: IcsLinks | None = None,
        http: aiohttp.ClientSession | None = None,
    ) -> None:
        self.http = http
        self.store = store
        self.sources = sources
        self.destinations = destinations
        self.router = router
        self.config = config
        self.clock = clock
        self.metrics = metrics or Metrics()
        self.rng = rng or random.Random()
        self.ics_links = ics_links
        self._tasks: set[asyncio.Task[None]] = set()
        self._reserved = 0  # slots promised to hand-overs whose store call is in flight
        self._taking = False  # whether jobs may be handed over: in run() and drain() only
        self._backlog = False  # whether the last claim filled every free slot
        self._started = 0  # jobs started, claimed or handed over
        self._wake = asyncio.Event()
        self._stopping = False
        self._deadlines = Deadlines()  # the destinations' timeouts, one loop timer for all
        self._metered = stages.every()

    # --- loop --------------------------------------------------------------------------

    def wake(self) -> None:
        """Look at the due index now rather than at the next poll."""
        self._wake.set()

    def stop(self) -> None:
        """Stop claiming; ``run`` returns once running jobs finished or were released."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        lease = self.config.lease.total_seconds()
        poll = self.config.poll_interval.total_seconds()
        backoff = poll
        self._taking = True
        log.info("worker.started", concurrency=self.config.concurrency)
        for name, destination in self.destinations.items():
            for warning in type(destination).check(destination.config, self.clock.now()):
                log.warning("destination.warning", destination=name, warning=warning)
        loop = asyncio.get_running_loop()
        last_claim = -CLAIM_GAP
        while not self._stopping:
            if (wait := last_claim + CLAIM_GAP - loop.time()) > 0:
                await asyncio.sleep(wait)  # what becomes due meanwhile comes in this claim
                if self._stopping:  # stopped meanwhile: claim nothing more
                    break
            self._wake.clear()
            free = self._free()
            claimed = 0
            if free > 0:
                last_claim = loop.time()
                try:
                    jobs = await self.store.claim(self.clock.now(), lease, free)
                except Exception as error:  # the loop must outlive any one failure
                    if isinstance(error, StoreError):
                        log.warning("worker.store_error", error=str(error), retry_in=backoff)
                    else:
                        log.exception("worker.claim_error", retry_in=backoff)
                    await self._pause(backoff)
                    backoff = min(backoff * 2, 30.0)
                    continue
                backoff = poll
                claimed = len(jobs)
                self._backlog = claimed == free
                for job in jobs:
                    self.start(job)
            if claimed == 0 or claimed == free:
                await self._pause(poll)
        self._taking = False
        await self._shutdown()

    def start(self, job: Job, inbound: InboundEvent | None = None) -> None:
        """Run a claimed job in a slot of its own. ``inbound``: a dispatch's accepted
        webhook, when the caller has it at hand (intake), so it is not read back."""
        task = asyncio.create_task(self._counted(job, inbound))
        self._tasks.add(task)
        self._started += 1
        task.add_done_callback(self._done)

    def _free(self) -> int:
        return self.config.concurrency - len(self._tasks) - self._reserved

    def reserve(self, wanted: int, finishing: int = 0) -> _Room:
        """Room for up to ``wanted`` jobs handed over by a store call made inside (``with``
        gives the ``Handoff``, or None without room): the slots are promised until the
        call has answered and its jobs were started. ``finishing``: slots that free up as
        the caller ends (the job completing)."""
        room = min(wanted, self._free() + finishing) if self._taking and not self._stopping else 0
        return _Room(self, max(room, 0), finishing)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        # With a backlog (the last claim filled every free slot), claim again once a
        # quarter of the slots are free: one claim then fetches several jobs instead of
        # one round trip per finished job. Without one, what becomes due is handed over,
        # wakes the loop (left for a claim, a webhook accepted) or waits for the next poll.
        if self._backlog and self._free() >= max(1, self.config.concurrency // 4):
            self._wake.set()

    async def _pause(self, seconds: float) -> None:
        # asyncio.timeout rather than wait_for: no task of its own for every pause
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    async def _shutdown(self) -> None:
        if self._tasks:
            grace = self.config.shutdown_grace.total_seconds()
            log.info("worker.draining", running=len(self._tasks), grace=grace)
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        log.info("worker.stopped")

    async def drain(self, *, limit: int = 10_000) -> int:
        """Run due jobs until none is due at the clock's time; return how many ran (those
        handed over included)."""
        lease = self.config.lease.total_seconds()
        first, taking = self._started, self._taking
        self._taking = True
        try:
            while self._started - first < limit:
                free = self._free()
                jobs = await self.store.claim(self.clock.now(), lease, free) if free > 0 else []
                for job in jobs:
                    self.start(job)
                if not self._tasks:
                    break
                await self.settled()
        finally:
            self._taking = taking
        return self._started - first

    async def settled(self) -> None:
        """Wait until no job runs: every job started, those handed over meanwhile too,
        has ended."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks))

    # --- one job -----------------------------------------------------------------------

    def _counted(self, job: Job, inbound: InboundEvent | None) -> Coroutine[Any, Any, None]:
        """``process(job)``, its CPU time counted to its stage when counting is on."""
        if not self._metered:
            return self.process(job, inbound)
        stage = "delivery" if job.kind == "deliver" else "dispatch"
        return stages.metered(stage, self.process(job, inbound), self._metered)

    async def process(self, job: Job, inbound: InboundEvent | None = None) -> None:
        """Run one claimed job and record its outcome: done, retry or dead. ``inbound``: a
        dispatch's accepted webhook, if the caller has it."""
        with partition_scope(job.partition):  # its store calls use its partition's keys
            await self._process(job, inbound)

    async def _process(self, job: Job, inbound: InboundEvent | None = None) -> None:
        bound = _JobLog(job)
        started = self.clock.now()
        t0 = time.perf_counter()
        plan = _Plan()
        status = response = None
        if job.attempt > self._policy(job).max_attempts:
            # Claimed again and again without an outcome: each time, the worker running it
            # died or lost its lease. Stop before it takes another worker down.
            reason = f"claimed {job.attempt} times without an outcome (worker crashes?)"
            bound.error("job.dead", reason=reason)
            attempt = Attempt(job.attempt, started, 0.0, "dead", None, reason)
            await self._settle(job, attempt, self.store.bury(job, attempt, started, reason), bound)
            return
        try:
            if job.kind == "deliver":
                status, response = await self._deliver(job)
            else:
                plan = await self._dispatch(job, bound, inbound)
        except asyncio.CancelledError:
            with contextlib.suppress(StoreError):
                await asyncio.shield(self.store.release(job, self.clock.now()))
            bound.info("job.released")
            raise
        except StoreError as error:
            # The lease runs out and the job is claimed again: at least once, never lost.
            bound.error("job.interrupted", error=str(error))
            return
        except _Failure as failure:
            duration = (time.perf_counter() - t0) * 1000
            attempt, recorded = self._after_failure(job, failure, started, duration, bound)
            await self._settle(job, attempt, recorded, bound)
            return
        duration = (time.perf_counter() - t0) * 1000
        attempt = Attempt(job.attempt, started, duration, "done", status, None, response)
        health = "ok" if job.kind == "deliver" else None
        if plan.note is not None and plan.note.booking:
            bound = bound.bind(booking=plan.note.booking)
        # room for what this makes due at once: its spawned jobs, the next of its key
        with self.reserve(len(plan.spawn) + 1, finishing=1) as handoff:
            recorded = self.store.complete(
                job,
                attempt,
                self.clock.now(),
                plan.spawn,
                health,
                plan.unschedule,
                plan.note,
                handoff=handoff,
            )
            if await self._settle(job, attempt, recorded, bound):
                bound.info("job.done", spawned=len(plan.spawn), duration_ms=round(duration, 1))

    async def _settle(
        self, job: Job, attempt: Attempt, recorded: Awaitable[Recorded], bound: Any
    ) -> bool:
        """Await the store call that records an outcome and start the jobs it handed over;
        True if it was recorded."""
        try:
            kept = await recorded
        except StoreError as error:
            # The lease runs out and the job is claimed again: at least once, never lost.
            bound.error("job.unrecorded", outcome=attempt.outcome, error=str(error))
            return False
        if kept.circuit:
            log.warning("destination.circuit", destination=job.destination, state=kept.circuit)
        if kept.left:
            self._wake.set()  # due now, not handed over: the next claim takes them
        for handed in kept.jobs:
            if self._stopping:  # handed over as the worker stops: back to the queue
                with contextlib.suppress(StoreError):
                    await self.store.release(handed, self.clock.now())
            else:
                self.start(handed)
        if not kept:
            bound.warning("job.lease_lost", outcome=attempt.outcome)
            return False
        self.metrics.job(job.kind, attempt.outcome)
        if job.kind == "deliver" and job.destination:
            self.metrics.delivered(job, attempt.outcome, self.clock.now())
        return True

    def _policy(self, job: Job) -> RetryPolicy:
        if job.kind == "dispatch":
            return self.config.dispatch_retry
        destination = self.destinations.get(job.destination or "")
        return destination.config.retry if destination else RetryPolicy()

    def _after_failure(
        self, job: Job, failure: _Failure, started: float, duration: float, bound: Any
    ) -> tuple[Attempt, Awaitable[Recorded]]:
        """The attempt record, and the store call that retries or buries the job."""
        policy = self._policy(job)
        dead = failure.permanent or policy.exhausted(job.attempt, age=started - job.created_at)
        attempt = Attempt(
            job.attempt,
            started,
            duration,
            "dead" if dead else "retry",
            failure.status,
            failure.error,
            failure.response,
        )
        if dead:
            reason = failure.error
            if not failure.permanent:
                reason = f"gave up after attempt {job.attempt}: {failure.error}"
            bound.error("job.dead", **failure.loggable(), gave_up=not failure.permanent)
            return attempt, self.store.bury(
                job, attempt, self.clock.now(), reason, failure.health, failure.disable
            )
        delay = policy.delay(job.attempt, retry_after=failure.retry_after, rng=self.rng)
        bound.warning("job.retry", **failure.loggable(), retry_in=round(delay, 3))
        return attempt, self.store.retry(
            job, attempt, started + delay, failure.health, now=self.clock.now()
        )

    # --- dispatch ----------------------------------------------------------------------

    async def _dispatch(self, job: Job, bound: Any, inbound: InboundEvent | None) -> _Plan:
        """What a dispatch or timer job leads to. Any failure becomes a _Failure: a
        payload that cannot be normalized is permanent, anything else is retried."""
        try:
            if job.kind == "timer":
                return await self._timer(job, bound)
            return await self._normalize_and_route(job, bound, inbound)
        except (_Failure, StoreError):
            raise
        except (NormalizeError, ValueError) as error:
            raise _Failure(f"cannot normalize: {error}", permanent=True) from error
        except Exception as error:
            bound.error("dispatch.error", error_type=type(error).__name__, where=_where(error))
            raise _Failure(f"{type(error).__name__}: {error}", permanent=False) from error

    async def _normalize_and_route(
        self, job: Job, bound: Any, inbound: InboundEvent | None = None
    ) -> _Plan:
        event_id = job.payload["event_id"]
        if inbound is not None and inbound.id == event_id and job.attempt == 1:
            # handed over at intake with the webhook it accepted: nothing sent for it yet
            skip: set[str] = set()
        else:
            # both reads in one turn: they share a round trip
            inbound, skip = await asyncio.gather(self.store.get_event(event_id), self._sent(job))
        if inbound is None:
            raise _Failure(f"inbound event {event_id} is gone from the store", permanent=True)
        source = self.sources.get(inbound.source)
        if source is None:
            raise _Failure(f"source {inbound.source!r} is not configured", permanent=True)
        context = NormalizeContext(
            source=inbound.source,
            inbound_event_id=inbound.id,
            received_at=datetime.fromtimestamp(inbound.received_at, UTC),
            bookings=Bookings(self.store, self.clock.now()),
            http=self.http,
        )
        payload = orjson.loads(inbound.body)
        events = await source.normalize(payload, context)
        plan = await self._plan(job, events, bound, skip=skip)
        booked = next((e.booking for e in events if e.booking is not None), None)
        plan.note = EventNote(
            types=list(dict.fromkeys(e.type for e in events)),
            booking=booked.uid if booked else "",
            email=(booked.client.email or "") if booked else "",
            name=source.event_name(payload) or "" if isinstance(payload, dict) else "",
        )
        return plan

    async def _sent(self, job: Job) -> set[str]:
        """The signatures of the messages sent for the job's event before, which a replay
        does not send again (none when it is asked to resend)."""
        if job.payload.get("resend"):
            return set()
        return await self.store.sent_signatures(job.event_id or job.id)

    async def _timer(self, job: Job, bound: Any) -> _Plan:
        payload = job.payload
        now = self.clock.now()
        if payload["timer"] == "pair":
            # one half of a two-webhook change whose partner never came: it goes alone
            alone = await self.store.pair_timeout(payload["key"], now, job.id)
            events = [BookingEvent.model_validate(alone)] if alone else []
            return await self._plan(job, events, bound)
        # a time trigger: the booking as it stands now, to the route that scheduled it
        stored = await self.store.get_booking(payload["booking"])
        if stored is None:
            return _Plan()
        booking = Booking.model_validate(stored.snapshot).model_copy(
            update={"sequence": stored.sequence}
        )
        route = self.router.route(payload["route"])
        if booking.status == "cancelled" or route is None:
            return _Plan()
        if abs(route.fires_at(booking) - payload.get("at", route.fires_at(booking))) > 1:
            # the booking moved while this trigger was already running: its moved twin
            # sends at the new time
            bound.info("trigger.stale", route=route.name, booking=booking.uid)
            return _Plan()
        moment = datetime.fromtimestamp(now, UTC)
        event = BookingEvent(
            id=f"{job.id}.0",
            type=payload["trigger"],
            source=payload["source"],
            inbound_event_id=job.event_id or job.id,
            occurred_at=moment,
            received_at=moment,
            booking=booking,
        )
        return await self._plan(job, [event], bound, only=payload["route"], record=False)

    async def _plan(
        self,
        job: Job,
        events: list[BookingEvent],
        bound: Any,
        *,
        only: str | None = None,
        record: bool = True,
        skip: set[str] | None = None,
    ) -> _Plan:
        """Keep the bookings' new state, then the deliveries and time triggers the events
        call for. A job that ran before (a replay) does not send what was sent then,
        unless asked to (``skip``: what was sent, when the caller has read it already)."""
        now = self.clock.now()
        event_id = job.event_id or job.id
        if skip is None:
            skip = await self._sent(job)
        plan = _Plan()
        for event in events:
            data: dict[str, Any] | None = None  # the event as JSON, made once for its jobs
            changes: dict[str, Any] = {}  # to its booking, made in one copy
            stale = True
            if record and event.booking is not None:
                # one dump: its booking part is the state kept, the whole the jobs' event
                data = event.to_json()
                changes["sequence"], stale = await bookings.record(
                    self.store, event, now, data["booking"]
                )
            if event.booking is not None and self.ics_links is not None:
                link = self.ics_links.url(event.booking.uid)
                if link:
                    changes["urls"] = {**event.booking.urls, "ics": link}
            if changes:
                event = event.with_booking(**changes)
                if data is not None:  # the same changes, to the JSON (plain values as they are)
                    data = {**data, "booking": {**data["booking"], **changes}}
            if not stale:  # a replayed past event must not move today's triggers
                self._schedule_triggers(event, job, now, plan)
            for route, action in self.router.match(event, only=only):
                destination = self.destinations[action.to]
                for message in destination.plan(event, action):
                    signature = _signature(event.id, route.name, action.to, message)
                    if signature in skip:
                        continue
                    if data is None:
                        data = event.to_json()
                    plan.spawn.append(
                        NewJob(
                            id=new_id("job", now),
                            kind="deliver",
                            payload={
                                "route": route.name,
                                "event": data,
                                "message": message,
                            },
                            due=now,
                            destination=action.to,
                            event_id=event_id,
                            # one booking's messages reach a destination in accepted order
                            order_key=f"{action.to}|{event.subject}",
                            signature=signature,
                        )
                    )
        booked = next((e.booking.uid for e in events if e.booking is not None), None)
        bound.info(
            "dispatch.routed",
            booking=booked,
            events=[e.type for e in events],
            deliveries=[
                {"job_id": j.id, "destination": j.destination, "route": j.payload["route"]}
                for j in plan.spawn
                if j.kind == "deliver"
            ],
            timers=[
                {"job_id": j.id, "route": j.payload.get("route"), "fires_at": _when(j.due)}
                for j in plan.spawn
                if j.kind == "timer"
            ],
            unscheduled=len(plan.unschedule),
            skipped=len(skip),
        )
        return plan

    def _schedule_triggers(self, event: BookingEvent, job: Job, now: float, plan: _Plan) -> None:
        """Schedule, move or drop the time triggers of the event's booking: one keyed job
        per timed route and booking, so a reschedule replaces it and a cancellation drops
        it."""
        booking = event.booking
        assert booking is not None
        for route in self.router.timed:
            key = route.key(booking)
            if event.type == "booking_cancelled":
                plan.unschedule.append(key)
                continue
            if event.type == "marked_no_show":
                if route.trigger == "after_meeting_ends" and not route.keep_on_no_show:
                    plan.unschedule.append(key)
                continue
            if event.type not in ("booking_confirmed", "booking_rescheduled", "no_show_removed"):
                continue
            if event.type == "no_show_removed" and route.trigger != "after_meeting_ends":
                continue
            if not route.covers(booking):
                plan.unschedule.append(key)
                continue
            at = due = route.fires_at(booking)
            if due <= now:
                started = booking.start.timestamp() <= now
                if (
                    route.trigger == "before_meeting_starts"
                    and route.if_late == "now"
                    and not started
                ):
                    due = now
                else:
                    plan.unschedule.append(key)
                    continue
            plan.spawn.append(
                NewJob(
                    id=new_id("job", now),
                    kind="timer",
                    payload={
                        "timer": "trigger",
                        "trigger": route.trigger,
                        "route": route.name,
                        "booking": booking.uid,
                        "source": event.source,
                        "at": at,  # the time it stands for, to tell a moved trigger
                    },
                    due=due,
                    event_id=job.event_id,
                    key=key,
                )
            )

    # --- deliver -----------------------------------------------------------------------

    async def _deliver(self, job: Job) -> tuple[int | None, str | None]:
        destination = self.destinations.get(job.destination or "")
        if destination is None:
            raise _Failure(f"destination {job.destination!r} is not configured", permanent=True)
        delivery = Delivery(
            id=job.id,
            attempt=job.attempt,
            route=job.payload["route"],
            data=job.payload["event"],
            message=job.payload["message"],
        )
        timeout = destination.config.timeout.total_seconds()
        try:
            result = await self._deadlines.within(timeout, destination.deliver(delivery))
        except PermanentDelivery as error:
            gone = error.status == 410
            raise _Failure(
                error.detail,
                permanent=True,
                status=error.status,
                response=error.response,
                disable=f"the destination answered 410 Gone: {error.detail}" if gone else None,
            ) from error
        except RetryableDelivery as error:
            raise _Failure(
                error.detail,
                permanent=False,
                status=error.status,
                response=error.response,
                retry_after=error.retry_after,
                health="fail",
            ) from error
        except TimeoutError as error:
            raise _Failure(
                f"no answer within {timeout:g} s", permanent=False, health="fail"
            ) from error
        except ValueError as error:
            # The message cannot be made (composition, template, iCalendar): the content's
            # fault, not the destination's. Dead at once, and no verdict on its health.
            log.warning(
                "deliver.content_error",
                job_id=job.id,
                destination=job.destination,
                error_type=type(error).__name__,
            )
            raise _Failure(
                f"the message cannot be made ({type(error).__name__})", permanent=True
            ) from error
        except Exception as error:
            log.error(
                "deliver.error",
                job_id=job.id,
                destination=job.destination,
                error_type=type(error).__name__,
                where=_where(error),
            )
            raise _Failure(
                f"{type(error).__name__}: {error}", permanent=False, health="fail"
            ) from error
        response = result.response[:RESPONSE_EXCERPT] if result.response else None
        return result.status, response
