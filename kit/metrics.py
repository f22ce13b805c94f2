"""Prometheus metrics shared by the API and the workers.

With several API processes, set `PROMETHEUS_MULTIPROC_DIR` to an empty directory shared by them
(prometheus-client's multiprocess mode): every process then writes its samples to files there,
and whichever process answers `/metrics` reports the sum over all of them. Without it, each
process reports only itself, which is right for a single process and for workers, which are
scraped one by one on `WORKER_METRICS_PORT`.

Values that are the same whichever process reads them (queue depth, outbox lag) are not kept
here: `/metrics` reads them from Redis and Postgres when it is scraped (see `system_metrics`).
"""

import os
from collections.abc import Iterator
from dataclasses import dataclass

import asyncpg
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

REQUEST_DURATION = Histogram(
    "orders_http_request_duration_seconds",
    "HTTP request latency by method, route template and status.",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
DB_POOL_SIZE = Gauge(
    "orders_db_pool_connections",
    "Open connections in the asyncpg pool(s) of this role's processes.",
    ["role"],
    multiprocess_mode="livesum",
)
DB_POOL_IDLE = Gauge(
    "orders_db_pool_idle_connections",
    "Idle connections in the asyncpg pool(s) of this role's processes.",
    ["role"],
    multiprocess_mode="livesum",
)
CACHE_LOOKUPS = Counter(
    "orders_catalogue_cache_lookups_total",
    "Catalogue cache lookups by result (hit or miss).",
    ["result"],
)
JOB_DURATION = Histogram(
    "orders_job_duration_seconds",
    "Job run time by function and outcome (complete, retried, failed, aborted).",
    ["function", "outcome"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
RATE_LIMIT_FALLBACKS = Counter(
    "orders_rate_limit_fallbacks_total",
    "Times the cluster rate limit could not reach Redis and each process limited alone for a"
    " second.",
)


def record_pool(pool: asyncpg.Pool, role: str) -> None:
    DB_POOL_SIZE.labels(role).set(pool.get_size())
    DB_POOL_IDLE.labels(role).set(pool.get_idle_size())


@dataclass(frozen=True, slots=True)
class SystemSample:
    """What every process sees alike: read at scrape time, never aggregated across processes."""

    queue: str
    queued: int
    deferred: int
    in_progress: int
    oldest_due_age_s: float
    outbox_pending: int
    outbox_oldest_pending_age_s: float


class _SystemCollector(Collector):
    def __init__(self, sample: SystemSample) -> None:
        self._sample = sample

    def collect(self) -> Iterator[GaugeMetricFamily]:
        sample = self._sample
        jobs = GaugeMetricFamily(
            "orders_queue_jobs", "Jobs in the ARQ queue by state.", labels=["queue", "state"]
        )
        for state, count in (
            ("queued", sample.queued),
            ("deferred", sample.deferred),
            ("in_progress", sample.in_progress),
        ):
            jobs.add_metric([sample.queue, state], count)
        yield jobs
        age = GaugeMetricFamily(
            "orders_queue_oldest_due_age_seconds",
            "How long the oldest due job has waited (0 when none waits).",
            labels=["queue"],
        )
        age.add_metric([sample.queue], sample.oldest_due_age_s)
        yield age
        yield GaugeMetricFamily(
            "orders_outbox_pending",
            "Outbox rows not yet handed to the queue.",
            sample.outbox_pending,
        )
        yield GaugeMetricFamily(
            "orders_outbox_lag_seconds",
            "Age of the oldest outbox row not yet handed to the queue (0 when none).",
            sample.outbox_oldest_pending_age_s,
        )


def process_registry() -> CollectorRegistry:
    """This process's metrics, or every process's when multiprocess mode is on."""
    if os.environ.get(MULTIPROCESS_DIR_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


def exposition(sample: SystemSample | None) -> bytes:
    """The process metrics, then the scrape-time system metrics (left out if unreadable)."""
    text = generate_latest(process_registry())
    if sample is not None:
        system = CollectorRegistry(auto_describe=False)
        system.register(_SystemCollector(sample))
        text += generate_latest(system)
    return text


def mark_process_dead() -> None:
    """Drops this process's live gauges from the multiprocess files when it exits."""
    if os.environ.get(MULTIPROCESS_DIR_ENV):
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
