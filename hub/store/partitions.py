"""Partitions of the key space, so that a Redis Cluster can spread the hub's keys.

With ``store.partitions`` N > 1 (or on a Cluster) every key of the hub carries a hash tag:
partition *i* is the prefix ``{prefix}:{p<i>}:``, so every key a Lua script touches with
that prefix lies in one slot. Which partition a webhook goes to follows its ordering key
(for Calendly the invitee both halves of a reschedule name), so an event, its dispatch,
the deliveries and timers of its booking, the booking state and both halves of a
reschedule share one partition, and the scripts that order and pair them stay atomic.

The destination gates (concurrency limits, circuit breakers) are shared by every
partition; each destination has a slot of its own, ``{prefix}:{d:<name>}:``.

With N = 1 on a single Redis, the prefix is the plain ``{prefix}:`` of old: the key layout
does not change.

A job's work (a dispatch, a delivery) runs *in* the job's partition: the worker enters
``scope(job.partition)`` and every store call made inside, by the worker or by a connector
(booking lookups, pairing, connector memory), uses that partition's keys.
"""

from __future__ import annotations

import zlib
from contextvars import ContextVar

__all__ = ["current", "gate_prefix", "partition_of", "partition_prefix", "scope"]

_current: ContextVar[int | None] = ContextVar("hub_store_partition", default=None)


def partition_prefix(prefix: str, index: int, count: int, tagged: bool) -> str:
    """The key prefix of partition ``index`` of ``count``."""
    base = prefix.rstrip(":")
    if not tagged:
        return base + ":"
    return f"{base}:{{p{index}}}:"


def gate_prefix(prefix: str, destination: str) -> str:
    """The key prefix of a destination's gates: a slot of its own."""
    return f"{prefix.rstrip(':')}:{{d:{destination}}}:"


def partition_of(key: str, count: int) -> int:
    """The partition a key (an ordering key, a booking uid) belongs to."""
    if count <= 1:
        return 0
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % count


def current() -> int | None:
    """The partition the running job works in, or None outside a job."""
    return _current.get()


class scope:
    """Store calls made inside use ``partition``'s keys."""

    __slots__ = ("_partition", "_token")

    def __init__(self, partition: int | None) -> None:
        self._partition = partition

    def __enter__(self) -> None:
        self._token = _current.set(self._partition)

    def __exit__(self, *exc: object) -> None:
        _current.reset(self._token)
