"""Whether the system is healthy, and the thresholds that say so (the defaults of `ordersctl`).

Levels follow the Nagios convention, which `ordersctl queue` and `ordersctl health` use as exit
codes: 0 ok, 1 warning, 2 critical, 3 unknown (a service could not be read).
"""

import asyncio
from dataclasses import dataclass, field
from enum import IntEnum

import asyncpg
from redis.asyncio import Redis

from kit.db import UNAVAILABLE_ERRORS
from kit.errors import ServiceUnavailable
from kit.redis import REDIS_UNAVAILABLE_ERRORS
from kit.settings import Settings
from ops.outbox import outbox_status
from ops.queue import QueueStats, WorkerInfo, live_workers, queue_stats
from shop.jobs.keys import JobOutcome
from shop.jobs.outbox_repository import OutboxStats


class Level(IntEnum):
    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class QueueThresholds:
    """When a queue is at warning or critical level; None leaves a check off."""

    warn_age_s: float = 60
    crit_age_s: float = 300
    warn_depth: int = 1_000
    crit_depth: int = 10_000
    warn_failed: int | None = None
    crit_failed: int | None = None


@dataclass(frozen=True, slots=True)
class HealthThresholds:
    """What the system needs to be healthy."""

    min_workers: int = 1
    max_outbox_lag_s: float = 60.0


QUEUE_THRESHOLDS = QueueThresholds()
HEALTH_THRESHOLDS = HealthThresholds()


def grade(value: float | None, warn: float | None, crit: float | None) -> Level:
    if value is None:
        return Level.OK
    if crit is not None and value >= crit:
        return Level.CRITICAL
    if warn is not None and value >= warn:
        return Level.WARNING
    return Level.OK


@dataclass(frozen=True, slots=True)
class QueueHealth:
    stats: QueueStats
    level: Level
    # The checks above ok, in the order they are made: oldest_due_age, queued, failed_last_hour,
    # outbox_age.
    breaches: dict[str, Level]
    # Of the queue the outbox relay feeds: the rows still waiting in Postgres to be handed to it
    # (with every worker down they pile up there while the queue itself looks empty).
    outbox_pending: int | None = None
    outbox_oldest_pending_age_s: float | None = None


def queue_health(
    stats: QueueStats,
    thresholds: QueueThresholds = QUEUE_THRESHOLDS,
    outbox: OutboxStats | None = None,
) -> QueueHealth:
    """Grades a queue; with `outbox`, the queue the relay feeds, whose oldest waiting work may be
    an outbox row rather than a queued job (graded against the same age thresholds)."""
    checks = {
        "oldest_due_age": grade(
            stats.oldest_due_age_s, thresholds.warn_age_s, thresholds.crit_age_s
        ),
        "queued": grade(stats.queued, thresholds.warn_depth, thresholds.crit_depth),
        "failed_last_hour": grade(
            stats.last_hour.get(JobOutcome.FAILED, 0),
            thresholds.warn_failed,
            thresholds.crit_failed,
        ),
        "outbox_age": grade(
            None if outbox is None else outbox.oldest_pending_age_s,
            thresholds.warn_age_s,
            thresholds.crit_age_s,
        ),
    }
    return QueueHealth(
        stats=stats,
        level=max(checks.values()),
        breaches={name: level for name, level in checks.items() if level is not Level.OK},
        outbox_pending=None if outbox is None else outbox.pending,
        outbox_oldest_pending_age_s=None if outbox is None else outbox.oldest_pending_age_s,
    )


@dataclass(frozen=True, slots=True)
class QueueReport:
    level: Level
    queues: list[QueueHealth]


async def queue_report(
    pool: asyncpg.Pool,
    redis: Redis,
    settings: Settings,
    names: list[str] | None = None,
    thresholds: QueueThresholds = QUEUE_THRESHOLDS,
) -> QueueReport:
    """`ordersctl queue` and the console's overview: each queue graded, the relay's queue with
    the outbox backlog beside it."""
    names = names or [settings.queue_name]
    outbox = await outbox_status(pool, settings) if settings.queue_name in names else None
    graded = [
        queue_health(
            await queue_stats(redis, name),
            thresholds,
            outbox if name == settings.queue_name else None,
        )
        for name in names
    ]
    return QueueReport(max((queue.level for queue in graded), default=Level.OK), graded)


@dataclass(frozen=True, slots=True)
class Check:
    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class HealthReport:
    healthy: bool
    checks: dict[str, Check] = field(default_factory=dict)


async def health(
    pool: asyncpg.Pool,
    redis: Redis,
    settings: Settings,
    thresholds: HealthThresholds = HEALTH_THRESHOLDS,
) -> HealthReport:
    checks: dict[str, Check] = {}
    outbox: OutboxStats | None = None
    try:
        async with asyncio.timeout(
            settings.db_pool_acquire_timeout_s + settings.db_command_timeout_s
        ):
            outbox = await outbox_status(pool, settings)
        checks["postgres"] = Check(True, "ok")
    except (ServiceUnavailable, *UNAVAILABLE_ERRORS, asyncpg.PostgresError) as exc:
        checks["postgres"] = Check(False, f"unavailable: {type(exc).__name__}")
    workers: list[WorkerInfo] | None = None
    try:
        await redis.ping()
        checks["redis"] = Check(True, "ok")
        workers = await live_workers(redis, settings.queue_name)
    except REDIS_UNAVAILABLE_ERRORS as exc:
        checks["redis"] = Check(False, f"unavailable: {type(exc).__name__}")
    min_workers = thresholds.min_workers
    if workers is None:
        checks["workers"] = Check(False, "unknown (Redis unavailable)")
    else:
        checks["workers"] = Check(
            len(workers) >= min_workers, f"{len(workers)} live (at least {min_workers} wanted)"
        )
    max_lag_s = thresholds.max_outbox_lag_s
    if outbox is None:
        checks["outbox"] = Check(False, "unknown (Postgres unavailable)")
    else:
        lag = outbox.oldest_pending_age_s or 0.0
        checks["outbox"] = Check(
            lag <= max_lag_s,
            f"{outbox.pending} pending, oldest {lag:.1f} s (at most {max_lag_s:g} s)",
        )
    return HealthReport(all(check.ok for check in checks.values()), checks)
