"""Prometheus metrics, one registry per process (or per test app).

Counters and histograms count what this process did. The gauges (jobs by state and kind,
dead letters and open circuits by destination, the oldest due job's age) say how the
shared store stands: they are read from counts the store keeps, when scraped.

The counters and histograms of the hot path (a webhook, a job, a delivery) are counted
as plain numbers in the event loop's thread and handed to prometheus-client as metric
families when scraped (a custom collector): a labelled ``Counter.inc`` or a
``Histogram.observe`` takes a lock and several calls, and a delivery made three of them,
about 4 % of its instructions. (These series have no ``_created`` sample.)"""

from __future__ import annotations

import bisect
import contextlib
import itertools
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

__all__ = ["Metrics"]


class Tally:
    """A counter with labels: a count per combination of label values."""

    def __init__(self, name: str, documentation: str, labels: list[str]) -> None:
        self.name, self.documentation, self.labels = name, documentation, labels
        self.counts: dict[tuple[str, ...], int] = {}

    def inc(self, *values: str) -> None:
        self.counts[values] = self.counts.get(values, 0) + 1

    def family(self) -> Metric:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        for values, count in list(self.counts.items()):
            family.add_metric(list(values), count)
        return family


class Spread:
    """A histogram without labels: a count per bucket, and the sum."""

    def __init__(
        self,
        name: str,
        documentation: str,
        buckets: Sequence[float] = Histogram.DEFAULT_BUCKETS,
    ) -> None:
        self.name, self.documentation = name, documentation
        self.bounds = sorted({float(b) for b in buckets} | {float("inf")})
        self.counts = [0] * len(self.bounds)  # each bucket's own, not cumulative
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1  # value <= bound
        self.sum += value

    def family(self) -> Metric:
        cumulative = itertools.accumulate(self.counts)
        return HistogramMetricFamily(
            self.name,
            self.documentation,
            buckets=[(floatToGoString(b), n) for b, n in zip(self.bounds, cumulative, strict=True)],
            sum_value=self.sum,
        )


class _Collector:
    """Hands the tallies and spreads to a registry when it is scraped."""

    def __init__(self, metrics: list[Tally | Spread]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        for metric in self._metrics:
            yield metric.family()


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.webhooks = Tally(
            "hub_webhooks_total",
            "Webhooks received, by source and outcome (accepted, duplicate, or the error)",
            ["source", "outcome"],
        )
        self.intake_seconds = Spread(
            "hub_intake_seconds", "Time from request to answer on POST /hooks/{source}"
        )
        self.jobs = Tally(
            "hub_job_attempts_total",
            "Job attempts by kind and outcome (done, retry, dead)",
            ["kind", "outcome"],
        )
        self.deliveries = Tally(
            "hub_deliveries_total",
            "Delivery attempts by destination and outcome (done, retry, dead)",
            ["destination", "outcome"],
        )
        self.delivery_latency = Spread(
            "hub_delivery_latency_seconds",
            "Time from the webhook's acceptance to its message's delivery",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400),
        )
        self.registry.register(
            _Collector(
                [
                    self.webhooks,
                    self.intake_seconds,
                    self.jobs,
                    self.deliveries,
                    self.delivery_latency,
                ]
            )
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
        """Count one webhook by source and outcome."""
        self.webhooks.inc(source, outcome)

    def job(self, kind: str, outcome: str) -> None:
        """Count one job attempt by kind and outcome."""
        self.jobs.inc(kind, outcome)

    def delivered(self, job: Any, outcome: str, now: float) -> None:
        """Count one delivery attempt's outcome; a delivered message's latency since its
        webhook was accepted."""
        self.deliveries.inc(job.destination, outcome)
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
