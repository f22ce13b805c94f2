"""The operator's view, joining what Redis (the queue) and Postgres (orders, outbox, ledger) know.

`ordersctl` and `/metrics` are thin shells over these functions.
"""

import asyncio
from dataclasses import asdict, dataclass, field, is_dataclass
from datetime import datetime
from typing import Any

import asyncpg
from redis.asyncio import Redis

from kit.db import UNAVAILABLE_ERRORS, connection
from kit.errors import ServiceUnavailable
from kit.metrics import SystemSample
from kit.redis import REDIS_UNAVAILABLE_ERRORS
from kit.settings import Settings
from ops import queue as queue_inspect
from ops.queue import JobInfo
from ops.redaction import redact, redact_text
from shop.jobs import dead_job_repository as dead_jobs_repo
from shop.jobs import outbox_repository as outbox_repo
from shop.jobs.dead_job_repository import DeadJob
from shop.jobs.outbox_repository import OutboxStats
from shop.orders import repository as orders_repo


def _from_ledger(dead: DeadJob) -> JobInfo:
    return JobInfo(
        job_id=dead.job_id,
        status=queue_inspect.DEAD,
        function=dead.function,
        args=redact(dead.args),
        kwargs=redact(dead.kwargs),
        order_id=dead.order_id,
        tries=dead.tries,
        enqueued_at=dead.enqueued_at,
        finished_at=dead.failed_at,
        error=redact_text(dead.error),
        traceback=None if dead.traceback is None else redact_text(dead.traceback),
        dead_id=dead.id,
        redriven_job_id=dead.redriven_job_id,
    )


async def list_jobs(
    pool: asyncpg.Pool,
    redis: Redis,
    settings: Settings,
    *,
    status: str | None = None,
    function: str | None = None,
    search: str | None = None,
    limit: int = 50,
) -> list[JobInfo]:
    """Jobs with `status` (every status when None): the queue's, ARQ's results, the ledger's."""
    statuses = queue_inspect.STATUSES if status is None else (status,)
    found = await queue_inspect.list_jobs(
        redis,
        settings.queue_name,
        statuses=tuple(s for s in statuses if s != queue_inspect.DEAD),
        function=function,
        search=search,
        limit=limit,
    )
    if queue_inspect.DEAD in statuses and len(found) < limit:
        async with connection(pool, settings.db_pool_acquire_timeout_s) as conn:
            dead = await dead_jobs_repo.list_recent(
                conn, function=function, search=search, limit=limit - len(found)
            )
        found.extend(_from_ledger(row) for row in dead)
    return found


@dataclass(frozen=True, slots=True)
class JobDetail:
    job_id: str
    # What ARQ knows now (None once it has forgotten the job, 24 h after it ended).
    job: JobInfo | None
    # Every time this job id went to the dead-job ledger, newest first, with its traceback.
    ledger: list[JobInfo]
    order_status: str | None


async def job_detail(
    pool: asyncpg.Pool, redis: Redis, settings: Settings, job_id: str
) -> JobDetail | None:
    job = await queue_inspect.get_job(redis, settings.queue_name, job_id)
    async with connection(pool, settings.db_pool_acquire_timeout_s) as conn:
        ledger = [_from_ledger(row) for row in await dead_jobs_repo.list_for_job(conn, job_id)]
        if job is None and not ledger:
            return None
        order_id = job.order_id if job is not None else ledger[0].order_id
        order = None if order_id is None else await orders_repo.get(conn, order_id)
    return JobDetail(
        job_id=job_id,
        job=job,
        ledger=ledger,
        order_status=None if order is None else order.status.value,
    )


async def outbox_status(pool: asyncpg.Pool, settings: Settings) -> OutboxStats:
    async with connection(pool, settings.db_pool_acquire_timeout_s) as conn:
        return await outbox_repo.stats(conn)


@dataclass(frozen=True, slots=True)
class TimelineEvent:
    at: datetime
    event: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class OrderTimeline:
    order_id: int
    status: str
    request_id: str | None
    events: list[TimelineEvent]
    jobs: list[JobInfo]


async def order_timeline(
    pool: asyncpg.Pool, redis: Redis, settings: Settings, order_id: int
) -> OrderTimeline | None:
    """The order's life in time order: its states, its jobs and their outcomes, its email."""
    async with connection(pool, settings.db_pool_acquire_timeout_s) as conn:
        order = await orders_repo.get(conn, order_id)
        if order is None:
            return None
        outbox = await outbox_repo.list_for_order(conn, order_id)
        ledger = await dead_jobs_repo.list_for_order(conn, order_id)
    events = [
        TimelineEvent(order.created_at, "placed", f"total {order.total_cents} {order.currency}")
    ]
    if order.confirmed_at:
        events.append(TimelineEvent(order.confirmed_at, "confirmed", "stock reserved"))
    if order.rejected_at:
        events.append(TimelineEvent(order.rejected_at, "rejected", order.rejection_reason or ""))
    if order.cancelled_at:
        events.append(TimelineEvent(order.cancelled_at, "cancelled"))
    if order.confirmation_sent_at:
        events.append(TimelineEvent(order.confirmation_sent_at, "email sent", "confirmation"))
    job_ids: list[str] = []
    for entry in outbox:
        job_ids.append(entry.job_id)
        events.append(TimelineEvent(entry.created_at, "job written to outbox", entry.job_id))
        if entry.delivered_at:
            events.append(
                TimelineEvent(
                    entry.delivered_at,
                    "job handed to queue",
                    f"{entry.job_id} (attempt {entry.delivery_attempts})",
                )
            )
    for dead in ledger:
        events.append(
            TimelineEvent(dead.failed_at, "job dead", f"{dead.job_id}: {redact_text(dead.error)}")
        )
        if dead.redriven_at and dead.redriven_job_id:
            events.append(TimelineEvent(dead.redriven_at, "job re-driven", dead.redriven_job_id))
            job_ids.append(dead.redriven_job_id)
    jobs = [
        job
        for job in await asyncio.gather(
            *(queue_inspect.get_job(redis, settings.queue_name, job_id) for job_id in job_ids)
        )
        if job is not None
    ]
    for job in jobs:
        if job.started_at:
            events.append(
                TimelineEvent(job.started_at, "job started", f"{job.job_id} try {job.tries}")
            )
        if job.finished_at:
            complete = job.status == queue_inspect.COMPLETE
            outcome = f"result {job.result!r}" if complete else job.error or ""
            events.append(
                TimelineEvent(job.finished_at, f"job {job.status}", f"{job.job_id}: {outcome}")
            )
    events.sort(key=lambda event: event.at)
    return OrderTimeline(
        order_id=order.id,
        status=order.status.value,
        request_id=outbox[0].request_id if outbox else None,
        events=events,
        jobs=jobs,
    )


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
    *,
    min_workers: int = 1,
    max_outbox_lag_s: float = 60.0,
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
    workers: list[queue_inspect.WorkerInfo] | None = None
    try:
        await redis.ping()
        checks["redis"] = Check(True, "ok")
        workers = await queue_inspect.live_workers(redis, settings.queue_name)
    except REDIS_UNAVAILABLE_ERRORS as exc:
        checks["redis"] = Check(False, f"unavailable: {type(exc).__name__}")
    if workers is None:
        checks["workers"] = Check(False, "unknown (Redis unavailable)")
    else:
        checks["workers"] = Check(
            len(workers) >= min_workers, f"{len(workers)} live (at least {min_workers} wanted)"
        )
    if outbox is None:
        checks["outbox"] = Check(False, "unknown (Postgres unavailable)")
    else:
        lag = outbox.oldest_pending_age_s or 0.0
        checks["outbox"] = Check(
            lag <= max_outbox_lag_s,
            f"{outbox.pending} pending, oldest {lag:.1f} s (at most {max_outbox_lag_s:g} s)",
        )
    return HealthReport(all(check.ok for check in checks.values()), checks)


# A scrape must stay cheap: the queue walk stops after this many jobs (enough to find the
# running ones and the oldest waiting one); the counts themselves come from the sorted set.
_SCRAPE_SCAN_LIMIT = 1000
_SCRAPE_ERRORS: tuple[type[Exception], ...] = (
    ServiceUnavailable,
    *REDIS_UNAVAILABLE_ERRORS,
    *UNAVAILABLE_ERRORS,
)


async def system_sample(
    pool: asyncpg.Pool, redis: Redis, settings: Settings
) -> SystemSample | None:
    """Queue depth and outbox lag for `/metrics`; None when Redis or Postgres cannot tell."""
    try:
        queue = await queue_inspect.queue_stats(
            redis, settings.queue_name, scan_limit=_SCRAPE_SCAN_LIMIT
        )
        outbox = await outbox_status(pool, settings)
    except _SCRAPE_ERRORS:
        return None
    return SystemSample(
        queue=settings.queue_name,
        queued=queue.queued,
        deferred=queue.deferred,
        in_progress=queue.in_progress,
        oldest_due_age_s=queue.oldest_due_age_s or 0.0,
        outbox_pending=outbox.pending,
        outbox_oldest_pending_age_s=outbox.oldest_pending_age_s or 0.0,
    )


def jsonable(value: Any) -> Any:
    """Dataclasses, datetimes and containers as JSON-ready values (for `--json`)."""
    if is_dataclass(value) and not isinstance(value, type):
        return jsonable(asdict(value))
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value
