"""One timer for the destinations' timeouts: a limit that runs out is a TimeoutError in
its task, a cancellation from elsewhere stays one, and nothing is left behind."""

from __future__ import annotations

import asyncio

import pytest

from hub.deadlines import Deadlines


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def waiting(deadlines: Deadlines, seconds: float = 5) -> asyncio.Task[None]:
    """A task awaiting, within ``seconds``, what never comes: started and waiting."""
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(deadlines.within(seconds, never))
    await asyncio.sleep(0)
    return task


async def test_a_limit_that_runs_out_is_a_timeout_and_the_others_run_on() -> None:
    clock = Clock()
    deadlines = Deadlines(clock)
    never: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    short = asyncio.create_task(deadlines.within(5, never))
    long = asyncio.create_task(deadlines.within(30, answer))
    await asyncio.sleep(0)  # both are waiting
    assert len(deadlines) == 2
    clock.now += 4.9
    assert deadlines.expire() == 0
    clock.now += 0.2
    assert deadlines.expire() == 1
    with pytest.raises(TimeoutError):
        await short
    assert not long.done()
    answer.set_result("in time")
    assert await long == "in time"
    assert len(deadlines) == 0


async def test_the_loop_timer_fires_at_the_nearest_limit() -> None:
    deadlines = Deadlines()
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError):
        await deadlines.within(0.05, never)
    assert loop.time() - started >= 0.05
    assert len(deadlines) == 0


async def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    clock = Clock()
    deadlines = Deadlines(clock)
    task = await waiting(deadlines)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(deadlines) == 0


async def test_cancelled_and_out_of_time_at_once_is_a_cancellation() -> None:
    clock = Clock()
    deadlines = Deadlines(clock)
    task = await waiting(deadlines)
    clock.now += 10
    task.cancel()  # the worker stopping, say
    assert deadlines.expire() == 1
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_an_awaitable_that_swallows_the_cancel_leaves_the_task_uncancelled() -> None:
    clock = Clock()
    deadlines = Deadlines(clock)
    reached = asyncio.Event()

    async def stubborn() -> str:
        try:
            reached.set()
            await asyncio.get_running_loop().create_future()
        except asyncio.CancelledError:
            return "kept going"
        return "unreachable"

    async def job() -> tuple[str, int]:
        result = await deadlines.within(5, stubborn())
        return result, asyncio.current_task().cancelling()  # type: ignore[union-attr]

    task = asyncio.create_task(job())
    await reached.wait()
    clock.now += 6
    assert deadlines.expire() == 1
    assert await task == ("kept going", 0)


async def test_one_limit_at_a_time_per_task() -> None:
    deadlines = Deadlines(Clock())

    async def nested() -> None:
        await deadlines.within(1, deadlines.within(1, asyncio.sleep(0)))

    with pytest.raises(RuntimeError, match="one limit at a time"):
        await nested()


def test_a_task_left_in_a_closed_loop_does_not_stop_the_next_loops_limits() -> None:
    """A task still inside ``within`` when its loop was closed (never cancelled) has
    nothing left to cancel: the limits of the tasks of a later loop still run out."""
    clock = Clock()
    deadlines = Deadlines(clock)
    first = asyncio.new_event_loop()
    stuck = first.create_task(deadlines.within(5, first.create_future()))
    first.run_until_complete(asyncio.sleep(0))  # the task waits inside `within`
    first.close()
    assert not stuck.done()

    async def later() -> None:
        task = await waiting(deadlines)
        clock.now += 10  # both limits have passed
        assert deadlines.expire() == 1
        with pytest.raises(TimeoutError):
            await task
        assert len(deadlines) == 0

    asyncio.run(later())
    stuck.get_coro().close()  # what is left of it, ended without its loop
    stuck._log_destroy_pending = False  # left pending on purpose: asyncio need not say so
