"""Prometheus metrics, one registry per process (or per test app).

Counters and histograms count what this process did. The gauges (jobs by state and kind,
dead letters and open circuits by destination, the oldest due job's age) say how the
shared store stands: they are read from counts the store keeps, when scraped."""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
            "hub_job_attempts_total",
            "Job attempts by kind and outcome (done, retry, dead)",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.deliveries = Counter(
            "hub_deliveries_total",
            "Delivery attempts by destination and outcome (done, retry, dead)",
            ["destination", "outcome"],
            registry=self.registry,
        )
        self.delivery_latency = Histogram(
            "hub_delivery_latency_seconds",
            "Time from the webhook's acceptance to its message's delivery",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400),
            registry=self.registry,
        )
        self.job_gauge = Gauge(
            "hub_jobs",
            "Jobs in the store by state and kind",
            ["state", "kind"],
            registry=self.registry,
        )
        self.dead_gauge = Gauge(
            "hub_dead_letters",
            "Dead letters in the store by destination",
            ["destination"],
            registry=self.registry,
        )
        self.circuit_gauge = Gauge(
            "hub_circuit_open",
            "1 while a destination's circuit is open or it is disabled, else 0",
            ["destination"],
            registry=self.registry,
        )
        self.oldest_due = Gauge(
            "hub_oldest_due_seconds",
            "How long the oldest due job has waited past its due time (0: none waits)",
            registry=self.registry,
        )

    def webhook(self, source: str, outcome: str) -> None:
        """Count one webhook (the labelled counter looked up once per pair)."""
        counter = self._webhook_counters.get((source, outcome))
        if counter is None:
            counter = self.webhooks.labels(source=source, outcome=outcome)
            self._webhook_counters[(source, outcome)] = counter
        counter.inc()

    def delivered(self, job: Any, outcome: str, now: float) -> None:
        """Count one delivery attempt's outcome; a delivered message's latency since its
        webhook was accepted."""
        self.deliveries.labels(destination=job.destination, outcome=outcome).inc()
        if outcome != "done":
            return
        received = (job.payload.get("event") or {}).get("received_at")
        if isinstance(received, str):
            with contextlib.suppress(ValueError):
                moment = datetime.fromisoformat(received).timestamp()
                self.delivery_latency.observe(max(0.0, now - moment))

    async def refresh(self, store: Any, destinations: list[str], now: float) -> None:
        """Set the gauges from the store's counts (before a scrape)."""
        counts = await store.counts(destinations, now)
        for (state, kind), n in counts.jobs.items():
            self.job_gauge.labels(state=state, kind=kind).set(n)
        for name, states in counts.destinations.items():
            self.dead_gauge.labels(destination=name).set(states.get("dead", 0))
        for state in await store.destination_states(destinations):
            opened = state.state in ("open", "half_open", "disabled")
            self.circuit_gauge.labels(destination=state.name).set(1 if opened else 0)
        waited = now - counts.oldest_due if counts.oldest_due is not None else 0.0
        self.oldest_due.set(max(0.0, waited))
