"""Jobs as operators see them: what the queue and ARQ know joined with the dead jobs in Postgres."""

from dataclasses import dataclass

import asyncpg
from redis.asyncio import Redis

from kit.db import connection
from kit.settings import Settings
from ops import queue
from ops.queue import JobInfo
from ops.redaction import redact, redact_text
from shop.jobs import dead_job_repository as dead_jobs_repo
from shop.jobs.dead_job_repository import DeadJob
from shop.orders import repository as orders_repo


def _from_dead_job(dead: DeadJob) -> JobInfo:
    return JobInfo(
        job_id=dead.job_id,
        status=queue.DEAD,
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
    """Jobs with `status` (every status when None): the queue's, ARQ's results, the dead ones."""
    statuses = queue.STATUSES if status is None else (status,)
    found = await queue.list_jobs(
        redis,
        settings.queue_name,
        statuses=tuple(s for s in statuses if s != queue.DEAD),
        function=function,
        search=search,
        limit=limit,
    )
    if queue.DEAD in statuses and len(found) < limit:
        async with connection(pool, settings.db_pool_acquire_timeout_s) as conn:
            dead = await dead_jobs_repo.list_recent(
                conn, function=function, search=search, limit=limit - len(found)
            )
        found.extend(_from_dead_job(row) for row in dead)
    return found


@dataclass(frozen=True, slots=True)
class JobDetail:
    job_id: str
    # What ARQ knows now (None once it has forgotten the job, 24 h after it ended).
    job: JobInfo | None
    # Every time this job id died, newest first, with its traceback (`ledger` in `--json`).
    ledger: list[JobInfo]
    order_status: str | None


async def job_detail(
    pool: asyncpg.Pool, redis: Redis, settings: Settings, job_id: str
) -> JobDetail | None:
    job = await queue.get_job(redis, settings.queue_name, job_id)
    async with connection(pool, settings.db_pool_acquire_timeout_s) as conn:
        deaths = [_from_dead_job(row) for row in await dead_jobs_repo.list_for_job(conn, job_id)]
        if job is None and not deaths:
            return None
        order_id = job.order_id if job is not None else deaths[0].order_id
        order = None if order_id is None else await orders_repo.get(conn, order_id)
    return JobDetail(
        job_id=job_id,
        job=job,
        ledger=deaths,
        order_status=None if order is None else order.status.value,
    )
