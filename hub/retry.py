"""When to try a failed job again."""

from __future__ import annotations

import random
from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field

from hub.units import Duration

__all__ = ["RetryPolicy"]


class RetryPolicy(BaseModel):
    """Exponential back-off with jitter: attempt n waits ``base * factor**(n-1)``, at most
    ``cap``, spread by ±``jitter``. After ``attempts`` attempts the job is a dead letter."""

    model_config = ConfigDict(extra="forbid")

    attempts: int = Field(8, ge=1, description="Attempts in all, the first included")
    base: Duration = Field(timedelta(seconds=5), description="Wait after the first failure")
    factor: float = Field(6.0, ge=1.0, description="Each wait is this many times the last")
    cap: Duration = Field(timedelta(hours=10), description="No wait is longer than this")
    jitter: float = Field(0.2, ge=0.0, lt=1.0, description="Spread each wait by ± this share")

    def exhausted(self, attempt: int) -> bool:
        """True when attempt number ``attempt`` (1-based) was the last one allowed."""
        return attempt >= self.attempts

    def delay(
        self,
        attempt: int,
        *,
        retry_after: float | None = None,
        rng: random.Random | None = None,
    ) -> float:
        """Seconds to wait after attempt number ``attempt`` failed.

        A destination's ``Retry-After`` is honoured when it asks for longer than the
        back-off, up to ``cap``.
        """
        cap = self.cap.total_seconds()
        wait = min(cap, self.base.total_seconds() * self.factor ** (attempt - 1))
        spread = (rng or random).uniform(-self.jitter, self.jitter)
        wait = wait * (1 + spread)
        if retry_after is not None:
            wait = max(wait, min(retry_after, cap))
        return max(wait, 0.0)
