"""When to try a failed job again, and when to give up."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hub.units import Duration

__all__ = ["DEFAULT_SCHEDULE", "RetryPolicy"]

# Close to the Standard Webhooks example: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
DEFAULT_SCHEDULE = tuple(timedelta(seconds=s) for s in (5, 300, 1800, 7200, 18000, 36000, 36000))
_EXPONENTIAL = ("base", "factor", "cap")


class RetryPolicy(BaseModel):
    """A schedule of waits, or exponential back-off; both spread by ±``jitter``.

    With ``schedule``, the wait after attempt n is its n-th entry, and there are as many
    attempts as entries plus one. Without it, the wait after attempt n is
    ``base * factor**(n-1)``, at most ``cap``. Writing any of base, factor and cap without a
    schedule chooses exponential back-off. A job stops being retried after ``attempts``
    attempts or, if set, once it is older than ``max_age``; it is then a dead letter.
    """

    model_config = ConfigDict(extra="forbid")

    schedule: list[Duration] | None = Field(
        list(DEFAULT_SCHEDULE), description="Waits after each failed attempt, in order"
    )
    base: Duration = Field(timedelta(seconds=5), description="Exponential: first wait")
    factor: float = Field(
        6.0, ge=1.0, description="Exponential: each wait is this many times the last"
    )
    cap: Duration = Field(timedelta(hours=10), description="Exponential: longest wait")
    jitter: float = Field(0.2, ge=0.0, lt=1.0, description="Spread each wait by ± this share")
    attempts: int | None = Field(
        None, ge=1, description="Attempts in all (default: schedule entries + 1, or 8)"
    )
    max_age: Duration | None = Field(
        None, description="Give up on a job older than this, whatever its attempts"
    )
    max_retry_after: Duration = Field(
        timedelta(hours=24), description="Longest Retry-After from a destination honoured"
    )

    @model_validator(mode="before")
    @classmethod
    def _choose_mode(cls, data: Any) -> Any:
        if (
            isinstance(data, dict)
            and "schedule" not in data
            and any(k in data for k in _EXPONENTIAL)
        ):
            return {**data, "schedule": None}
        return data

    @model_validator(mode="after")
    def _check(self) -> RetryPolicy:
        if self.schedule is not None and not self.schedule and self.attempts not in (None, 1):
            raise ValueError("an empty schedule allows one attempt only")
        return self

    @property
    def max_attempts(self) -> int:
        if self.attempts is not None:
            return self.attempts
        return len(self.schedule) + 1 if self.schedule is not None else 8

    def exhausted(self, attempt: int, age: float = 0.0) -> bool:
        """True when attempt number ``attempt`` (1-based) of a job ``age`` seconds old was the
        last one allowed."""
        if self.max_age is not None and age >= self.max_age.total_seconds():
            return True
        return attempt >= self.max_attempts

    def delay(
        self,
        attempt: int,
        *,
        retry_after: float | None = None,
        rng: random.Random | None = None,
    ) -> float:
        """Seconds to wait after attempt number ``attempt`` failed.

        A destination's ``Retry-After`` wins when it asks for longer, up to
        ``max_retry_after``.
        """
        if self.schedule is not None:
            waits = self.schedule or [timedelta(0)]
            wait = waits[min(attempt, len(waits)) - 1].total_seconds()
        else:
            cap = self.cap.total_seconds()
            wait = min(cap, self.base.total_seconds() * self.factor ** (attempt - 1))
        wait *= 1 + (rng or random).uniform(-self.jitter, self.jitter)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_retry_after.total_seconds()))
        return max(wait, 0.0)
