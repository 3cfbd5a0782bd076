"""Prometheus metrics, one registry per process (or per test app)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = ["Metrics"]


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self._webhook_counters: dict[tuple[str, str], Any] = {}
        self.registry = registry or CollectorRegistry()
        self.webhooks = Counter(
            "hub_webhooks_total",
            "Webhooks received, by source and outcome (accepted, duplicate, or the error)",
            ["source", "outcome"],
            registry=self.registry,
        )
        self.intake_seconds = Histogram(
            "hub_intake_seconds",
            "Time from request to answer on POST /hooks/{source}",
            registry=self.registry,
        )
        self.jobs = Counter(
            "hub_jobs_total",
            "Job attempts by kind and outcome (done, retry, dead)",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.deliveries = Counter(
            "hub_deliveries_total",
            "Messages a destination accepted",
            ["destination"],
            registry=self.registry,
        )

    def webhook(self, source: str, outcome: str) -> None:
        """Count one webhook (the labelled counter looked up once per pair)."""
        counter = self._webhook_counters.get((source, outcome))
        if counter is None:
            counter = self.webhooks.labels(source=source, outcome=outcome)
            self._webhook_counters[(source, outcome)] = counter
        counter.inc()
