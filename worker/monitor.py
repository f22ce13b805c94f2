"""What a worker tells operators about itself: a heartbeat key, outcome counters and metrics.

ARQ's own health check is one key per queue that every worker overwrites, so it cannot say how
many workers are alive. Each worker here keeps its own hash `<queue>:worker:<id>` (host, pid,
jobs running, done, failed, retried), refreshed every `WORKER_HEARTBEAT_INTERVAL_S` with a TTL of
`WORKER_HEARTBEAT_TTL_S`: a worker that is killed stops refreshing it and drops out of
`ordersctl workers` within the TTL. A clean shutdown deletes it at once.
"""

import asyncio
import contextlib
import os
import secrets
import socket
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from functools import wraps
from typing import Any

import asyncpg
import structlog
from arq import Retry
from redis.asyncio import Redis

from kit import metrics
from kit.batching import Batched
from kit.redis import REDIS_UNAVAILABLE_ERRORS
from kit.settings import Settings
from shop.jobs.keys import (
    STATS_TTL_S,
    JobOutcome,
    outcome_counter_key,
    outcome_field,
    run_time_key,
    worker_key_prefix,
)

log = structlog.get_logger(__name__)


class WorkerMonitor:
    def __init__(self, redis: Redis, settings: Settings, pool: asyncpg.Pool | None = None) -> None:
        self._redis = redis
        self._settings = settings
        self._pool = pool
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"
        self.key = worker_key_prefix(settings.queue_name) + self.worker_id
        self.started_at = time.time()
        self.running = 0
        self.done = 0
        self.failed = 0
        self.retried = 0
        # (minute, function, outcome, run time in ms) of the runs that ended.
        self._counts: Batched[tuple[int, str, JobOutcome, int]] = Batched(self._write_counts)

    async def record(self, function: str, outcome: JobOutcome, duration_s: float) -> None:
        """Counts the outcome; returns once the count is in Redis (or could not be written).

        Jobs that finish while a count is being written share the next write: one round trip
        for all of them instead of one each.
        """
        metrics.JOB_DURATION.labels(function, outcome).observe(duration_s)
        if outcome is JobOutcome.COMPLETE:
            self.done += 1
        elif outcome is JobOutcome.RETRIED:
            self.retried += 1
        else:
            self.failed += 1
        minute = int(time.time() // 60)
        try:
            await self._counts.add((minute, function, outcome, round(duration_s * 1000)))
        except asyncio.CancelledError:
            # The write was cancelled (a shutdown), not this job: the count is lost, the job not.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise

    async def _write_counts(self, fields: list[tuple[int, str, JobOutcome, int]]) -> None:
        queue = self._settings.queue_name
        counts: Counter[tuple[str, str]] = Counter()
        for minute, function, outcome, run_ms in fields:
            counts[outcome_counter_key(queue, minute), outcome_field(outcome, function)] += 1
            counts[run_time_key(queue, minute), function] += run_ms
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for (key, field), count in counts.items():
                    pipe.hincrby(key, field, count)
                for key in {key for key, _ in counts}:
                    pipe.expire(key, STATS_TTL_S)
                await pipe.execute()
        except REDIS_UNAVAILABLE_ERRORS as exc:  # a lost count must not fail a job
            log.warning("job_outcome_not_counted", error=repr(exc), jobs=len(fields))

    async def beat(self) -> None:
        ttl_ms = int(self._settings.worker_heartbeat_ttl_s * 1000)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                self.key,
                mapping={
                    "host": socket.gethostname(),
                    "pid": os.getpid(),
                    "started_at": self.started_at,
                    "heartbeat_at": time.time(),
                    "running": self.running,
                    "done": self.done,
                    "failed": self.failed,
                    "retried": self.retried,
                },
            )
            pipe.pexpire(self.key, ttl_ms)
            await pipe.execute()
        if self._pool is not None:
            metrics.record_pool(self._pool, "worker")

    async def run(self) -> None:
        """Beats until cancelled; a missed beat (Redis down) is retried at the next interval."""
        while True:
            try:
                await self.beat()
            except REDIS_UNAVAILABLE_ERRORS as exc:
                log.warning("worker_heartbeat_failed", error=repr(exc))
            await asyncio.sleep(self._settings.worker_heartbeat_interval_s)

    async def remove(self) -> None:
        with contextlib.suppress(*REDIS_UNAVAILABLE_ERRORS):
            await self._redis.delete(self.key)


JobCoroutine = Callable[..., Coroutine[Any, Any, Any]]


def observed(name: str, function: JobCoroutine) -> JobCoroutine:
    """`function` counted by the worker's monitor (`ctx["monitor"]`) and timed for Prometheus."""

    @wraps(function)
    async def run(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        monitor: WorkerMonitor | None = ctx.get("monitor")
        if monitor is not None:
            monitor.running += 1
        started = time.perf_counter()
        outcome = JobOutcome.FAILED
        try:
            result = await function(ctx, *args, **kwargs)
            outcome = JobOutcome.COMPLETE
            return result
        except Retry:
            outcome = JobOutcome.RETRIED
            raise
        except asyncio.CancelledError:
            outcome = JobOutcome.CANCELLED
            raise
        finally:
            duration_s = time.perf_counter() - started
            if monitor is None:
                metrics.JOB_DURATION.labels(name, outcome).observe(duration_s)
            else:
                monitor.running -= 1
                # Shielded: a cancelled job still gets counted.
                await asyncio.shield(monitor.record(name, outcome, duration_s))

    return run
