"""Log lines and counters of the job path: one JSON line per event whatever the values
hold, and every job and delivery counted."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import structlog

from hub.logs import configure_logging
from hub.metrics import Metrics
from hub.store import Job

HOSTILE = "Nora\u2028Weber\u2029\x85\r\nX-Forged: 1\x00\x1b[31m\"'\\ \U0001f5d3"


@pytest.fixture
def json_log(tmp_path):
    """configure_logging in JSON to a file; the default configuration back afterwards."""
    path = tmp_path / "hub.log"
    with path.open("w") as file:
        configure_logging("info", "json", file=file)
        try:
            yield path, structlog.get_logger("test")
        finally:
            structlog.reset_defaults()


def test_each_event_is_one_json_line_whatever_its_values_hold(json_log) -> None:
    path, log = json_log
    bound = log.bind(job_id="job_1", kind="deliver", destination="inxmail", route="all")
    bound.info("job.done", booking=HOSTILE, at=datetime(2026, 11, 20, tzinfo=UTC), n={1: (2,)})
    bound.debug("not.written")
    try:
        raise ValueError(HOSTILE)
    except ValueError:
        bound.exception("dispatch.error")
    data = path.read_bytes()
    lines = data.decode().splitlines()  # splits at U+2028, NEL, … too: none may be raw
    assert len(lines) == 2 == data.count(b"\n")
    done, error = (json.loads(line) for line in lines)
    assert done["event"] == "job.done" and done["level"] == "info"
    assert (done["job_id"], done["kind"], done["destination"], done["route"]) == (
        "job_1",
        "deliver",
        "inxmail",
        "all",
    )
    assert done["booking"] == HOSTILE
    assert done["at"] == "2026-11-20T00:00:00+00:00" and done["n"] == {"1": [2]}
    assert datetime.fromisoformat(done["timestamp"]).tzinfo is not None
    assert error["event"] == "dispatch.error" and error["level"] == "error"
    assert error["exception"][0]["exc_value"] == HOSTILE


def test_console_format_writes_text(tmp_path) -> None:
    path = tmp_path / "hub.log"
    with path.open("w") as file:
        configure_logging("warning", "console", file=file)
        try:
            log = structlog.get_logger("test")
            log.info("not.written")
            log.warning("worker.store_error", retry_in=1.0)
        finally:
            structlog.reset_defaults()
    text = path.read_text()
    assert "worker.store_error" in text and "retry_in" in text and "not.written" not in text


def test_jobs_and_deliveries_are_counted_by_their_labels() -> None:
    metrics = Metrics()
    for _ in range(3):
        metrics.job("deliver", "done")
    metrics.job("dispatch", "retry")
    job = Job("job_1", "deliver", {"event": {}}, 1, "lease", "inxmail", "evt_1", 0.0)
    metrics.delivered(job, "done", 10.0)
    metrics.delivered(job, "done", 10.0)
    metrics.delivered(job, "retry", 10.0)
    metrics.webhook("calendly", "accepted")
    sample = metrics.registry.get_sample_value
    assert sample("hub_job_attempts_total", {"kind": "deliver", "outcome": "done"}) == 3
    assert sample("hub_job_attempts_total", {"kind": "dispatch", "outcome": "retry"}) == 1
    assert sample("hub_job_attempts_total", {"kind": "dispatch", "outcome": "done"}) is None
    assert sample("hub_deliveries_total", {"destination": "inxmail", "outcome": "done"}) == 2
    assert sample("hub_deliveries_total", {"destination": "inxmail", "outcome": "retry"}) == 1
    assert sample("hub_webhooks_total", {"source": "calendly", "outcome": "accepted"}) == 1


def test_the_hot_paths_counts_read_as_prometheus_clients_own() -> None:
    """A Tally and a Spread expose what a labelled Counter and a Histogram of
    prometheus-client would for the same events: the same lines, bounds included."""
    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

    from hub.metrics import Spread, Tally, _Collector

    bounds = (0.05, 0.1, 1, 10, 86400)
    values = [0.0, 0.05, 0.0500001, 0.1, 0.7, 1, 9.99, 10, 86400, 86400.5, 1e12]
    labels = [("inxmail", "done"), ("inxmail", "done"), ("hook", "retry"), ('a\nb"c', "dead")]

    theirs = CollectorRegistry()
    counter = Counter("x_total", "Doc", ["destination", "outcome"], registry=theirs)
    histogram = Histogram("x_seconds", "Doc", buckets=bounds, registry=theirs)
    plain = Histogram("y_seconds", "Doc", registry=theirs)
    ours = CollectorRegistry()
    tally = Tally("x_total", "Doc", ["destination", "outcome"])
    spread, default = Spread("x_seconds", "Doc", buckets=bounds), Spread("y_seconds", "Doc")
    ours.register(_Collector([tally, spread, default]))
    for pair in labels:
        counter.labels(*pair).inc()
        tally.inc(*pair)
    for value in values:
        for theirs_one, ours_one in ((histogram, spread), (plain, default)):
            theirs_one.observe(value)
            ours_one.observe(value)

    def lines(registry: CollectorRegistry) -> list[str]:
        text = generate_latest(registry).decode()
        return sorted(line for line in text.splitlines() if "_created" not in line)

    assert lines(ours) == lines(theirs)
    assert 'x_seconds_bucket{le="0.05"} 2.0' in lines(ours)  # 0 and 0.05: le is <=
