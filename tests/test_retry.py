"""Retry policies: schedules, exponential back-off, limits, Retry-After."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from pydantic import ValidationError

from hub.outbound import parse_retry_after
from hub.retry import DEFAULT_SCHEDULE, RetryPolicy

NO_JITTER = {"jitter": 0}


def test_default_is_the_standard_webhooks_like_schedule() -> None:
    policy = RetryPolicy(**NO_JITTER)
    assert [policy.delay(n) for n in range(1, 8)] == [5, 300, 1800, 7200, 18000, 36000, 36000]
    assert policy.max_attempts == len(DEFAULT_SCHEDULE) + 1 == 8
    assert not policy.exhausted(7)
    assert policy.exhausted(8)


def test_a_schedule_is_followed_and_its_last_wait_repeats() -> None:
    policy = RetryPolicy.model_validate({"schedule": ["1s", "1m"], "attempts": 5, **NO_JITTER})
    assert [policy.delay(n) for n in range(1, 5)] == [1, 60, 60, 60]
    assert policy.exhausted(5)


def test_naming_base_factor_or_cap_chooses_exponential_backoff() -> None:
    policy = RetryPolicy.model_validate({"base": "2s", "factor": 3, "cap": "1m", **NO_JITTER})
    assert policy.schedule is None
    assert [policy.delay(n) for n in range(1, 6)] == [2, 6, 18, 54, 60]
    assert policy.max_attempts == 8


def test_jitter_spreads_each_wait_within_its_share() -> None:
    policy = RetryPolicy.model_validate({"schedule": ["100s"], "jitter": 0.2})
    rng = random.Random(7)
    waits = [policy.delay(1, rng=rng) for _ in range(200)]
    assert all(80 <= w <= 120 for w in waits)
    assert max(waits) - min(waits) > 20  # it does spread


def test_max_age_gives_up_on_old_jobs() -> None:
    policy = RetryPolicy.model_validate({"max_age": "1h"})
    assert not policy.exhausted(1, age=3599)
    assert policy.exhausted(1, age=3600)


def test_retry_after_wins_when_longer_but_only_up_to_the_bound() -> None:
    policy = RetryPolicy.model_validate({"schedule": ["10s"], "max_retry_after": "1h", **NO_JITTER})
    assert policy.delay(1, retry_after=5) == 10
    assert policy.delay(1, retry_after=600) == 600
    assert policy.delay(1, retry_after=86400) == 3600


def test_retry_after_header_forms() -> None:
    now = 1_800_000_000.0
    assert parse_retry_after("120", now) == 120
    assert parse_retry_after("Fri, 15 Jan 2027 08:02:00 GMT", now) == pytest.approx(120)
    assert parse_retry_after("Fri, 15 Jan 2027 07:00:00 GMT", now) == 0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


def test_an_empty_schedule_means_one_attempt() -> None:
    assert RetryPolicy.model_validate({"schedule": []}).max_attempts == 1
    with pytest.raises(ValidationError, match="one attempt only"):
        RetryPolicy.model_validate({"schedule": [], "attempts": 3})


def test_durations_in_a_schedule_are_validated() -> None:
    with pytest.raises(ValidationError, match="expected a duration"):
        RetryPolicy.model_validate({"schedule": ["5 minutes"]})
    assert RetryPolicy.model_validate({"schedule": [30]}).schedule == [timedelta(seconds=30)]
