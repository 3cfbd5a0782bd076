"""Every Redis key the hub writes, in one place.

    {p}:events                  sorted set  inbound event ids by received time (ms)
    {p}:event:{id}              hash        source, body, received_at, order_key
    {p}:event:{id}:sent         set         signatures of the messages enqueued for it
    {p}:dedup:{source}:{key}    string      inbound event id; expires after the dedup window
    {p}:replay:{event id}       string      the pending replay dispatch of an event
    {p}:seq                     string      counter ordering the jobs of an ordering key
    {p}:q:due                   sorted set  job ids by due time (ms)
    {p}:q:inflight              sorted set  claimed job ids by lease expiry (ms)
    {p}:q:dead                  sorted set  dead-letter job ids by time of death (ms)
    {p}:order:{key}             sorted set  unfinished job ids of an ordering key, by seq
    {p}:job:{id}                hash        kind, payload, state, attempts, lease, …
    {p}:job:{id}:attempts       list        one JSON record per attempt
    {p}:dest:{name}             hash        circuit state, window counters, jobs in flight
    {p}:jobkey:{key}            string      the job scheduled under a key (reminders, timers)
    {p}:booking:{uid}           hash        a booking's current snapshot and sequence
    {p}:bookref:{ref}           string      booking uid of a provider reference
    {p}:pair:{key}              hash        one half of a two-webhook change, waiting
    {p}:memory:{destination}    hash        what a destination connector remembered (before
                                            entries had keys of their own; still read)
    {p}:mem:{destination}:{key} string      one thing a destination connector remembers;
                                            expires a year after it was last written
    {p}:route:{ordering key}    string      the partition prefix a booking's webhooks go to

Partitioned (``hub/store/partitions.py``), ``{p}`` is ``{prefix}:{p<i>}`` for each
partition, and a destination's gates live in a slot of their own:

    {prefix}:{d:<name>}:dest:{name}     hash        circuit state, window counters
    {prefix}:{d:<name>}:running:{name}  sorted set  ``{job id}|{lease}`` by lease expiry

The read side's indexes, kept by the same scripts (no listing scans the keyspace). Each
is one partition's; a reader merges the partitions' sets (today: one partition).

    {p}:event:{id}:jobs         sorted set  the jobs an inbound event led to, by creation
    {p}:ix:source:{source}      sorted set  inbound event ids of a source, by receipt
    {p}:ix:type:{type}          sorted set  inbound event ids by canonical type, by receipt
    {p}:ix:email:{digest}       sorted set  inbound event ids by the client's email digest
    {p}:ix:booking:{uid}        sorted set  inbound event ids of a booking, by receipt
    {p}:jobs:{state}:kind:{k}   sorted set  job ids of a state and kind, by entry in it
    {p}:jobs:{state}:to:{dest}  sorted set  delivery ids of a state and destination
    {p}:rate:{minute}           hash        deliveries of a minute by outcome (2 h)

The Lua scripts of ``hub/store/redis.py`` build the same names from the prefix they are
given; each script touches the keys of one prefix only.
"""

from __future__ import annotations

__all__ = ["Keys"]


class Keys:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix.rstrip(":") + ":"
        p = self.prefix
        self.events = p + "events"
        self.due = p + "q:due"
        self.inflight = p + "q:inflight"
        self.dead = p + "q:dead"

    def event(self, event_id: str) -> str:
        return f"{self.prefix}event:{event_id}"

    def sent(self, event_id: str) -> str:
        return f"{self.prefix}event:{event_id}:sent"

    def dedup(self, source: str, key: str) -> str:
        return f"{self.prefix}dedup:{source}:{key}"

    def job(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    def attempts(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}:attempts"

    def destination(self, name: str) -> str:
        return f"{self.prefix}dest:{name}"

    def booking(self, uid: str) -> str:
        return f"{self.prefix}booking:{uid}"

    def booking_ref(self, ref: str) -> str:
        return f"{self.prefix}bookref:{ref}"

    def job_key(self, key: str) -> str:
        return f"{self.prefix}jobkey:{key}"

    def memory(self, scope: str) -> str:
        return f"{self.prefix}memory:{scope}"

    def memory_entry(self, scope: str, key: str) -> str:
        return f"{self.prefix}mem:{scope}:{key}"

    def route(self, key: str) -> str:
        return f"{self.prefix}route:{key}"

    def running(self, name: str) -> str:
        return f"{self.prefix}running:{name}"

    # --- the read side's indexes

    def event_jobs(self, event_id: str) -> str:
        return f"{self.prefix}event:{event_id}:jobs"

    def by_source(self, source: str) -> str:
        return f"{self.prefix}ix:source:{source}"

    def by_type(self, event_type: str) -> str:
        return f"{self.prefix}ix:type:{event_type}"

    def by_email(self, digest: str) -> str:
        return f"{self.prefix}ix:email:{digest}"

    def booking_events(self, uid: str) -> str:
        return f"{self.prefix}ix:booking:{uid}"

    def jobs_of_kind(self, state: str, kind: str) -> str:
        return f"{self.prefix}jobs:{state}:kind:{kind}"

    def jobs_to(self, state: str, destination: str) -> str:
        return f"{self.prefix}jobs:{state}:to:{destination}"

    def rate(self, minute: int) -> str:
        return f"{self.prefix}rate:{minute}"

    def order(self, key: str) -> str:
        return f"{self.prefix}order:{key}"
