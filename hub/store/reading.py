"""The Redis store's read side: listings from the indexes its scripts keep.

Nothing here scans the keyspace. A listing reads one or a few index sorted sets (one
per partition and value; they are merged newest first), then the records they name,
in pipelines. Records that expired since they were indexed are skipped.
"""

from __future__ import annotations

import base64
import binascii
import heapq
from typing import TYPE_CHECKING, Any

from hub.store import JobInfo
from hub.store.keys import Keys
from hub.store.views import (
    JOB_KINDS,
    JOB_STATES,
    Counts,
    EventFilter,
    EventRecord,
    JobFilter,
    Page,
)

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from hub.store.lookup import Digests

__all__ = ["RedisReading", "decode_cursor", "encode_cursor"]

_HIGHEST = "\U0010ffff"  # sorts after every id: "everything at this instant"
_SCAN_LIMIT = 5000  # most index entries one page looks at before it answers


def encode_cursor(position: tuple[int, str]) -> str:
    return base64.urlsafe_b64encode(f"{position[0]}:{position[1]}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    """Raise ValueError for a cursor this store did not make."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        score, member = text.split(":", 1)
        return int(score), member
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValueError("not a cursor of this listing") from None


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def _text(value: bytes | None) -> str:
    return value.decode() if value else ""


class RedisReading:
    """Mixed into ``RedisStore``: it provides ``redis``, ``keys``, ``digests``, ``_call``
    and ``_jobs``."""

    redis: aioredis.Redis
    keys: Keys
    digests: Digests
    _read_events: Any  # the READ_EVENTS script, registered by the store

    async def _call(self, awaitable: Any) -> Any:
        raise NotImplementedError

    async def _jobs(self, ids: list[str]) -> list[JobInfo]:
        raise NotImplementedError

    def _partitions(self) -> list[Keys]:
        """The partitions whose indexes a listing merges (one on a single Redis)."""
        return [self.keys]

    # --- merging index sets ------------------------------------------------------------

    async def _after(
        self, sets: list[str], before: tuple[int, str] | None, low: int | None, count: int
    ) -> list[tuple[int, str]]:
        """Up to ``count`` (score, member) of ``sets`` together, newest first, strictly
        after ``before`` in that order and not older than ``low``."""
        floor = low if low is not None else "-inf"
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in sets:
                if before is None:
                    pipe.zrevrangebyscore(key, "+inf", floor, 0, count, withscores=True)
                else:
                    # the members at the boundary's own instant, then the older ones
                    pipe.zrevrangebyscore(key, before[0], before[0], withscores=True)
                    pipe.zrevrangebyscore(key, f"({before[0]}", floor, 0, count, withscores=True)
            results = await self._call(pipe.execute())
        found: set[tuple[int, str]] = set()
        for result in results:
            for member, score in result:
                item = (int(score), member.decode())
                if before is None or item < before:
                    found.add(item)
        return heapq.nlargest(count, found)

    async def _page(
        self,
        sets: list[str],
        cursor: str | None,
        until: float | None,
        since: float | None,
        limit: int,
        keep: Any,
        sifted: bool = True,
    ) -> tuple[list[Any], str | None]:
        """Walk the merged sets newest first, keeping what ``keep(ids)`` returns for a
        batch of ids (awaitable: a list of (id, record or None)), until ``limit`` are kept,
        the sets end, or a scan limit is reached (then the cursor continues the walk).
        Unless ``sifted`` (``keep`` drops records that do not match), a batch is a page."""
        before = decode_cursor(cursor) if cursor else None
        if until is not None:
            bound = (_ms(until), _HIGHEST)
            before = min(before, bound) if before else bound
        low = _ms(since) if since is not None else None
        kept: list[Any] = []
        examined = 0
        while True:
            batch = await self._after(sets, before, low, limit * 2 if sifted else limit)
            if not batch:
                return kept, None
            records = await keep([member for _, member in batch])
            for position, (_, record) in zip(batch, records, strict=True):
                examined += 1
                before = position
                if record is not None:
                    kept.append(record)
                    if len(kept) == limit:
                        return kept, encode_cursor(position)
            if examined >= _SCAN_LIMIT:
                return kept, encode_cursor(before)

    # --- events ------------------------------------------------------------------------

    async def _event_records(self, ids: list[str]) -> list[EventRecord | None]:
        """The events' records and their jobs counted by state: one read-only script."""
        if not ids:
            return []
        rows = await self._call(self._read_events(args=[self.keys.prefix, *ids]))
        records: list[EventRecord | None] = []
        for event_id, row in zip(ids, rows, strict=True):
            if not row:
                records.append(None)
                continue
            counts: dict[str, int] = {}
            for state in row[6:]:
                counts[state.decode()] = counts.get(state.decode(), 0) + 1
            records.append(_record(event_id, row, counts))
        return records

    async def events(
        self, where: EventFilter, cursor: str | None = None, limit: int = 50
    ) -> Page[EventRecord]:
        """Inbound events, newest first, by the most selective index the filter allows;
        the filter's other conditions are checked on each record."""
        emails = set(self.digests.lookups(where.email)) if where.email else set()
        sets: list[str] = []
        for part in self._partitions():
            if where.booking:
                sets.append(part.booking_events(where.booking))
            elif where.email:
                sets += [part.by_email(digest) for digest in sorted(emails)]
            elif where.type:
                sets.append(part.by_type(where.type))
            elif where.source:
                sets.append(part.by_source(where.source))
            else:
                sets.append(part.events)

        async def keep(ids: list[str]) -> list[EventRecord | None]:
            out: list[EventRecord | None] = []
            for record in await self._event_records(ids):
                if record is not None and (
                    (where.source and record.source != where.source)
                    or (where.type and where.type not in record.types)
                    or (where.booking and record.booking != where.booking)
                    or (emails and record.email_digest not in emails)
                ):
                    record = None
                out.append(record)
            return out

        # the index read answers every condition but the others named with it
        sifted = sum(bool(v) for v in (where.source, where.type, where.booking, where.email)) > 1
        items, following = await self._page(
            sets, cursor, where.until, where.since, limit, _pairs(keep), sifted
        )
        return Page(items, following)

    async def event_record(self, event_id: str) -> EventRecord | None:
        return (await self._event_records([event_id]))[0]

    async def event_jobs(self, event_id: str) -> list[JobInfo]:
        """Every job an inbound event led to, in the order they were made."""
        ids = await self._call(self.redis.zrange(self.keys.event_jobs(event_id), 0, -1))
        return await self._jobs([i.decode() for i in ids])

    async def booking_events(self, uid: str) -> list[EventRecord]:
        """A booking's inbound events, oldest first."""
        ids = await self._call(self.redis.zrange(self.keys.booking_events(uid), 0, -1))
        return [r for r in await self._event_records([i.decode() for i in ids]) if r]

    # --- jobs --------------------------------------------------------------------------

    async def jobs(
        self, where: JobFilter, cursor: str | None = None, limit: int = 50
    ) -> Page[JobInfo]:
        """Jobs, the latest to enter their state first."""
        states = [where.state] if where.state else list(JOB_STATES)
        kinds = [where.kind] if where.kind else list(JOB_KINDS)
        sets: list[str] = []
        for part in self._partitions():
            if where.destination:
                if "deliver" in kinds:
                    sets += [part.jobs_to(state, where.destination) for state in states]
            else:
                sets += [part.jobs_of_kind(state, kind) for state in states for kind in kinds]
        if not sets:
            return Page([], None)

        async def keep(ids: list[str]) -> list[JobInfo | None]:
            found = {job.id: job for job in await self._jobs(ids)}
            return [found.get(i) for i in ids]

        items, following = await self._page(
            sets, cursor, None, where.since, limit, _pairs(keep), sifted=False
        )
        return Page(items, following)

    async def waits_behind(self, job: JobInfo) -> str | None:
        """The job a blocked job waits behind: the oldest unfinished one of its key."""
        if job.state != "blocked" or not job.order_key:
            return None
        head = await self._call(self.redis.zrange(self.keys.order(job.order_key), 0, 0))
        return head[0].decode() if head and head[0].decode() != job.id else None

    async def dead_letter_ids(
        self, destination: str | None = None, since: float | None = None
    ) -> list[str]:
        """Every dead letter's id (of a destination, given up since a time), oldest first."""
        low = _ms(since) if since is not None else "-inf"
        sets = [
            part.jobs_to("dead", destination) if destination else part.dead
            for part in self._partitions()
        ]
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in sets:
                pipe.zrangebyscore(key, low, "+inf", withscores=True)
            results = await self._call(pipe.execute())
        merged = sorted((score, member.decode()) for r in results for member, score in r)
        return [member for _, member in merged]

    # --- counts ------------------------------------------------------------------------

    async def counts(self, destinations: list[str], now: float) -> Counts:
        """Jobs by state and kind, each destination's jobs by state, and when the oldest
        job due at ``now`` became due: sizes of the indexes, no scan."""
        pairs = [(state, kind) for state in JOB_STATES for kind in JOB_KINDS]
        per_destination = [(d, state) for d in destinations for state in JOB_STATES]
        parts = self._partitions()
        async with self.redis.pipeline(transaction=False) as pipe:
            for part in parts:
                for state, kind in pairs:
                    pipe.zcard(part.jobs_of_kind(state, kind))
                for destination, state in per_destination:
                    pipe.zcard(part.jobs_to(state, destination))
                pipe.zrangebyscore(part.due, "-inf", _ms(now), 0, 1, withscores=True)
            results = iter(await self._call(pipe.execute()))
        jobs = dict.fromkeys(pairs, 0)
        by_destination: dict[str, dict[str, int]] = {d: {} for d in destinations}
        oldest: float | None = None
        for _ in parts:
            for pair in pairs:
                jobs[pair] += next(results)
            for destination, state in per_destination:
                by_destination[destination][state] = by_destination[destination].get(
                    state, 0
                ) + next(results)
            first = next(results)
            if first:
                due = first[0][1] / 1000
                oldest = due if oldest is None else min(oldest, due)
        return Counts(jobs=jobs, destinations=by_destination, oldest_due=oldest)

    async def delivery_rates(self, now: float, minutes: int = 60) -> list[dict[str, Any]]:
        """Deliveries of each of the last ``minutes`` minutes by outcome, oldest first."""
        last = int(now // 60)
        span = range(last - minutes + 1, last + 1)
        async with self.redis.pipeline(transaction=False) as pipe:
            for part in self._partitions():
                for minute in span:
                    pipe.hgetall(part.rate(minute))
            results = await self._call(pipe.execute())
        rates = []
        for i, minute in enumerate(span):
            counts: dict[str, int] = {}
            for p in range(len(self._partitions())):
                for outcome, n in results[p * len(span) + i].items():
                    counts[outcome.decode()] = counts.get(outcome.decode(), 0) + int(n)
            rates.append({"minute": minute * 60, **counts})
        return rates


def _pairs(keep: Any) -> Any:
    """``keep`` as ``_page`` wants it: each id with its record or None."""

    async def paired(ids: list[str]) -> list[tuple[str, Any]]:
        return list(zip(ids, await keep(ids), strict=True))

    return paired


def _record(event_id: str, row: list[bytes | None], counts: dict[str, int]) -> EventRecord:
    return EventRecord(
        id=event_id,
        source=_text(row[0]),
        received_at=int(row[1] or 0) / 1000,
        name=_text(row[2]) or None,
        types=[t for t in _text(row[3]).split(",") if t],
        booking=_text(row[4]) or None,
        jobs=counts,
        email_digest=_text(row[5]),
    )
