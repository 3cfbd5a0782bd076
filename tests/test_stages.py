"""CPU time by stage (``HUB_CPU_STAGES=N``): a metered coroutine counts the CPU time of
its own steps, not of the work that runs while it waits, and behaves as it would
unmetered: results, errors and cancellation pass through. One in N is metered, for N."""

from __future__ import annotations

import asyncio
import re
import time

import pytest

from hub import stages

CREATED = "calendly/invitee_created.json"


def burn(seconds: float) -> None:
    """Spend CPU time (not wall time: a busy machine stretches it, never shortens it)."""
    until = time.thread_time() + seconds
    while time.thread_time() < until:
        pass


async def test_a_stage_counts_its_own_steps_and_not_what_runs_while_it_waits() -> None:
    ready = asyncio.Event()

    async def stage_work() -> str:
        burn(0.01)
        await ready.wait()  # meanwhile another task burns 50 ms of CPU
        burn(0.01)
        return "done"

    async def other_work() -> None:
        await asyncio.sleep(0)
        burn(0.05)
        ready.set()

    before = stages.spent()["dispatch"]
    result, _ = await asyncio.gather(stages.metered("dispatch", stage_work(), 1), other_work())
    counted = stages.spent()["dispatch"] - before
    assert result == "done"
    assert 0.02 <= counted < 0.05


async def test_errors_and_cancellation_pass_through() -> None:
    async def fails() -> None:
        await asyncio.sleep(0)
        raise LookupError("gone")

    with pytest.raises(LookupError, match="gone"):
        await stages.metered("delivery", fails(), 1)

    cleaned = asyncio.Event()
    started = asyncio.Event()

    async def waits_forever() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.set()

    task = asyncio.create_task(stages.metered("delivery", waits_forever(), 1))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned.is_set()


async def test_one_in_n_is_metered_and_counts_n_times() -> None:
    async def work() -> None:
        burn(0.002)

    before = stages.spent()["intake"]
    coroutines = [stages.metered("intake", work(), 4) for _ in range(8)]
    metered = [c for c in coroutines if c.cr_code is not work.__code__]
    assert len(metered) == 2  # whichever two: the count runs on from earlier calls
    for coroutine in coroutines:
        await coroutine
    counted = stages.spent()["intake"] - before
    assert 2 * 4 * 0.002 <= counted < 2 * 4 * 0.004


def cpu_seconds(text: str) -> dict[str, float]:
    found = re.findall(r'^hub_cpu_seconds_total\{stage="(\w+)"\} (\S+)$', text, re.M)
    return {stage: float(value) for stage, value in found}


async def test_metrics_show_the_cpu_time_of_each_stage(start_hub, monkeypatch) -> None:
    monkeypatch.setenv("HUB_CPU_STAGES", "1")  # every one
    hub = await start_hub()
    before = cpu_seconds(await (await hub.client.get("/metrics")).text())
    await hub.accept(CREATED)
    assert await hub.worker.drain() == 3  # the dispatch and two Inxmail events
    after = cpu_seconds(await (await hub.client.get("/metrics")).text())
    assert set(after) == {"intake", "dispatch", "delivery", "other"}
    for stage in ("intake", "dispatch", "delivery"):
        assert after[stage] > before[stage], stage
    assert after["other"] >= 0


async def test_off_by_default(start_hub, monkeypatch) -> None:
    monkeypatch.delenv("HUB_CPU_STAGES", raising=False)
    hub = await start_hub()
    assert "hub_cpu_seconds" not in await (await hub.client.get("/metrics")).text()
