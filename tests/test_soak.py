"""A small soak in the suite; ``bench/soak.py`` runs a large one."""

from __future__ import annotations

import pytest

from bench.soak import run_soak
from tests.conftest import REDIS_URL

pytestmark = pytest.mark.subprocess


async def test_soak_flaky_destination_and_killed_workers(tmp_path) -> None:
    report = await run_soak(
        bookings=30, kills=2, redis_url=REDIS_URL, concurrency=8, workdir=tmp_path, within=240
    )
    print("\n".join(report.lines(8)))
    assert report.missing == []
    assert report.delivered == report.expected == 120
    assert report.kills == 2
    assert report.failures_injected > 0
    assert report.order_violations == []
    assert report.id_violations == []
    assert report.duplicates <= report.kills * 8
    assert report.in_flight_after == 0  # no slot of the concurrency limit leaked
