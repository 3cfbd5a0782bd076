"""CPU time by stage, from the process's own clock: what intake, dispatch and delivery
each cost.

Off by default; ``HUB_CPU_STAGES=N`` in the environment turns it on (the benchmarks do).
A stage's coroutine (a request to ``POST /hooks/{source}``, one dispatch or delivery job)
is then run through a meter that reads the thread's CPU clock around each of its steps,
so the time of everything that runs inside the stage counts, however its awaits
interleave with other work. Reading that clock is a system call, so one coroutine in
``N`` of each stage is metered, and counts ``N`` times (``1``: every one; an odd ``N``
keeps a stage's alternating kinds of work, say the customer's and the partner's message,
both in the sample). What runs outside any stage (HTTP parsing and writing in the
server's protocol, store pipelines flushed together, claims, the event loop itself) is
``other``: the process's CPU time less the stages'. ``/metrics`` shows them all as
``hub_cpu_seconds_total{stage}``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterable
from typing import Any, TypeVar

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

__all__ = ["STAGES", "StageCollector", "every", "metered", "spent", "wrap"]

STAGES = ("intake", "dispatch", "delivery")
T = TypeVar("T")

_spent = dict.fromkeys(STAGES, 0.0)
_seen = dict.fromkeys(STAGES, 0)
_clock = time.thread_time


def every() -> int:
    """One coroutine in how many of a stage is metered; 0 when counting is off."""
    value = os.environ.get("HUB_CPU_STAGES", "")
    return int(value) if value.isdigit() else 0


class _Meter:
    """Drives a coroutine step by step, adding each step's CPU time (times the sampling
    interval) to its stage."""

    __slots__ = ("_coro", "_stage", "_weight")

    def __init__(self, stage: str, coro: Coroutine[Any, Any, Any], weight: int) -> None:
        self._stage = stage
        self._coro = coro
        self._weight = weight

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, stage, weight = self._coro, self._stage, self._weight
        send, error = None, None
        while True:
            started = _clock()
            try:
                yielded = coro.send(send) if error is None else coro.throw(error)
            except StopIteration as done:
                _spent[stage] += (_clock() - started) * weight
                return done.value
            except BaseException:
                _spent[stage] += (_clock() - started) * weight
                raise
            _spent[stage] += (_clock() - started) * weight
            try:
                send, error = (yield yielded), None
            except BaseException as thrown:  # cancellation, say: the coroutine hears it
                send, error = None, thrown


async def _metered(stage: str, coro: Coroutine[Any, Any, T], weight: int) -> T:
    return await _Meter(stage, coro, weight)


def metered(stage: str, coro: Coroutine[Any, Any, T], interval: int) -> Coroutine[Any, Any, T]:
    """``coro``, metered for ``stage`` if it is the one in ``interval`` whose turn it is."""
    _seen[stage] += 1
    if interval < 1 or _seen[stage] % interval:
        return coro
    return _metered(stage, coro, interval)


def wrap(stage: str, handler: Callable[..., Coroutine[Any, Any, T]]) -> Callable[..., Awaitable[T]]:
    """``handler`` with its CPU time counted to ``stage`` (when counting is on)."""
    interval = every()
    if not interval:
        return handler

    async def counted(*args: Any) -> T:
        return await metered(stage, handler(*args), interval)

    return counted


def spent() -> dict[str, float]:
    """CPU seconds by stage since the process started, ``other`` included."""
    stages = dict(_spent)
    stages["other"] = max(time.process_time() - sum(stages.values()), 0.0)
    return stages


class StageCollector(Collector):
    """``hub_cpu_seconds_total{stage}`` for a Prometheus registry."""

    def collect(self) -> Iterable[CounterMetricFamily]:
        family = CounterMetricFamily(
            "hub_cpu_seconds", "CPU time of this process by stage", labels=["stage"]
        )
        for stage, seconds in spent().items():
            family.add_metric([stage], seconds)
        yield family
