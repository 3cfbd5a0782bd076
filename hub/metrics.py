"""Prometheus metrics, one registry per process (or per test app)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = ["Metrics"]


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self._children: dict[tuple[Any, ...], Any] = {}
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

    def _inc(self, counter: Counter, *values: str) -> None:
        """Count one, the labelled child looked up once per combination (``labels()``
        validates and locks on every call)."""
        key = (counter, *values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = counter.labels(*values)
        child.inc()

    def webhook(self, source: str, outcome: str) -> None:
        """Count one webhook by source and outcome."""
        self._inc(self.webhooks, source, outcome)

    def job(self, kind: str, outcome: str) -> None:
        """Count one job attempt by kind and outcome."""
        self._inc(self.jobs, kind, outcome)

    def delivered(self, destination: str) -> None:
        """Count one message a destination accepted."""
        self._inc(self.deliveries, destination)
