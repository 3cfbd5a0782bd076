"""Time limits for many tasks at once, kept by one timer.

``asyncio.timeout`` arms a timer of the loop for each use and cancels it after: with a
delivery a job, that is a timer made and dropped for every job, for limits that almost
never run out. ``Deadlines`` keeps each running task's limit in a dict and one timer
for the earliest of them; when it fires, it cancels the tasks whose time is up and arms
itself for the next limit. A limit that runs out raises ``TimeoutError`` in its task, as
``asyncio.timeout`` does, and a cancellation from elsewhere stays a cancellation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["Deadlines"]

T = TypeVar("T")
_NEVER = float("inf")


class Deadlines:
    """The limits of the tasks awaiting ``within``, one loop timer for them all.

    ``clock`` (seconds, monotonic): the loop's clock unless given; a test that gives its
    own moves it and calls ``expire()``."""

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self._clock = clock
        self._limits: dict[asyncio.Task[object], float] = {}
        self._expired: set[asyncio.Task[object]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._armed = _NEVER  # the limit the timer fires for
        self._loop: asyncio.AbstractEventLoop | None = None  # the timer's

    def __len__(self) -> int:
        return len(self._limits)

    async def within(self, seconds: float, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable`` in the current task; ``TimeoutError`` if it takes more than
        ``seconds`` (the task is cancelled at that time, as by ``asyncio.timeout``). A
        task has one limit at a time."""
        task = asyncio.current_task()
        if task is None or task in self._limits:
            if asyncio.iscoroutine(awaitable):
                awaitable.close()
            raise RuntimeError("Deadlines.within: one limit at a time, in a task")
        loop = asyncio.get_running_loop()
        limit = self._now(loop) + seconds
        self._limits[task] = limit
        if limit < self._armed or loop is not self._loop:
            self._arm(loop, limit)
        cancelling = task.cancelling()
        try:
            return await awaitable
        except asyncio.CancelledError:
            if task in self._expired:
                self._expired.discard(task)
                # ours alone (nobody else cancelled it meanwhile): a timeout
                if task.uncancel() <= cancelling:
                    raise TimeoutError from None
            raise
        finally:
            if task in self._expired:  # ran out as it ended: take our cancellation back
                self._expired.discard(task)
                task.uncancel()
            self._limits.pop(task, None)  # (gone already if its loop was closed meanwhile)

    def expire(self) -> int:
        """Cancel the tasks whose limit has passed (the timer does this at each limit);
        how many were cancelled now."""
        loop = asyncio.get_running_loop()
        if self._timer is not None:  # (a no-op when it is the timer calling)
            self._timer.cancel()
            self._timer = None
        self._armed = _NEVER
        now = self._now(loop)
        nearest = _NEVER
        cancelled = 0
        for task, limit in list(self._limits.items()):
            if task.get_loop().is_closed():  # left behind by a closed loop: none to cancel
                del self._limits[task]
                self._expired.discard(task)
            elif limit > now:
                nearest = min(nearest, limit)
            elif task not in self._expired and not task.done():
                self._expired.add(task)
                task.cancel()
                cancelled += 1
        if nearest != _NEVER:
            self._arm(loop, nearest)
        return cancelled

    def _now(self, loop: asyncio.AbstractEventLoop) -> float:
        return self._clock() if self._clock is not None else loop.time()

    def _arm(self, loop: asyncio.AbstractEventLoop, limit: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._armed = limit
        self._loop = loop
        self._timer = loop.call_later(max(0.0, limit - self._now(loop)), self.expire)
