"""What operators change in the queue: abort a job, purge a queue, retry dead or failed jobs.

Reading the queue is `ops.queue`; recording a dead job and enqueuing it again is the jobs
domain's (`shop.jobs.dead_jobs`), shared with the worker.
"""

from dataclasses import dataclass

import asyncpg
from arq.connections import ArqRedis
from arq.constants import abort_jobs_ss, job_key_prefix, retry_key_prefix
from arq.utils import timestamp_ms
from redis.asyncio import Redis

from kit.db import connection
from kit.errors import Conflict, NotFound
from kit.settings import Settings
from ops.queue import (
    COMPLETE,
    DEFAULT_SCAN_LIMIT,
    DEFERRED,
    FAILED,
    get_failed_result,
    get_job,
    queue_windows,
)
from shop.jobs import dead_job_repository as dead_jobs_repo
from shop.jobs.dead_jobs import record_dead_job, retry_dead_job


async def abort(redis: Redis, queue: str, job_id: str) -> str:
    """Asks the workers to abort a queued, deferred or running job; returns its status before.

    A running job is cancelled by the worker that runs it within a poll; a waiting one is made due
    now so that a worker picks it up at once and aborts it before it starts (what `arq` does).
    ARQ then records it as failed with CancelledError.
    """
    job = await get_job(redis, queue, job_id)
    if job is None:
        raise NotFound(f"There is no job {job_id} in {queue}.")
    if job.status in (COMPLETE, FAILED):
        raise Conflict(f"Job {job_id} has already finished ({job.status}).")
    async with redis.pipeline(transaction=True) as pipe:
        if job.status == DEFERRED:
            pipe.zadd(queue, {job_id: 1})
        pipe.zadd(abort_jobs_ss, {job_id: timestamp_ms()})
        await pipe.execute()
    return job.status


async def purge(redis: Redis, queue: str, *, scan_limit: int = DEFAULT_SCAN_LIMIT) -> int:
    """Removes every waiting (queued or deferred) job of `queue`; running jobs are left alone.

    Returns how many were removed. Their definitions go too, so a worker that raced us to one of
    them records it as expired instead of running it.
    """
    removed = 0
    while True:
        # Removing shifts the ranks, so each pass restarts from the front and skips running jobs.
        doomed: list[str] = []
        async for window in queue_windows(redis, queue, scan_limit):
            doomed.extend(job_id for job_id, _, _, running, _ in window if not running)
            if doomed:
                break
        if not doomed:
            return removed
        async with redis.pipeline(transaction=True) as pipe:
            pipe.zrem(queue, *doomed)
            pipe.delete(*(job_key_prefix + job_id for job_id in doomed))
            pipe.delete(*(retry_key_prefix + job_id for job_id in doomed))
            await pipe.execute()
        removed += len(doomed)


@dataclass(frozen=True, slots=True)
class RetryOutcome:
    """One dead job asked to be retried: its new job id, or why it was not retried."""

    dead_id: int
    job_id: str
    function: str
    new_job_id: str | None
    error: str | None = None


async def retry_job(
    pool: asyncpg.Pool, settings: Settings, queue: ArqRedis, job_id: str
) -> RetryOutcome:
    """Retries one dead or failed job by its ARQ job id.

    A dead job (recorded, not yet retried) is retried as it is. A job that ARQ recorded as failed
    without being recorded as dead (aborted, or failed outside the job wrapper) is first recorded
    as dead, so that every retry leaves the same trail. A job that is still queued or running, or
    that completed, is refused.
    """
    job = await get_job(queue, settings.queue_name, job_id)
    if job is not None and job.status != FAILED:
        raise Conflict(f"Job {job_id} is {job.status}; only dead or failed jobs are re-driven.")
    async with connection(pool, settings.db_pool_acquire_timeout_s) as conn:
        deaths = await dead_jobs_repo.list_for_job(conn, job_id)
    if not deaths:
        failed = await get_failed_result(queue, settings.queue_name, job_id)
        if failed is None:
            raise NotFound(f"There is no dead or failed job {job_id}.")
        await record_dead_job(pool, settings, **failed)
        async with connection(pool, settings.db_pool_acquire_timeout_s) as conn:
            deaths = await dead_jobs_repo.list_for_job(conn, job_id)
    pending = [dead for dead in deaths if dead.redriven_at is None]
    if not pending:
        raise Conflict(f"Job {job_id} was re-driven already as {deaths[0].redriven_job_id}.")
    dead = pending[0]
    new_job_id = await retry_dead_job(pool, settings, queue, dead.id)
    return RetryOutcome(dead.id, dead.job_id, dead.function, new_job_id)


async def retry_dead(
    pool: asyncpg.Pool,
    settings: Settings,
    queue: ArqRedis,
    *,
    function: str | None = None,
    dry_run: bool = False,
    limit: int = 1000,
) -> list[RetryOutcome]:
    """Retries every dead job not yet retried (of one function), oldest first.

    One that another operator retried meanwhile is reported with its error, not retried twice.
    """
    async with connection(pool, settings.db_pool_acquire_timeout_s) as conn:
        rows = await dead_jobs_repo.list_recent(
            conn, function=function, only_pending=True, limit=limit
        )
    done: list[RetryOutcome] = []
    for dead in reversed(rows):
        if dry_run:
            done.append(RetryOutcome(dead.id, dead.job_id, dead.function, None))
            continue
        try:
            new_job_id = await retry_dead_job(pool, settings, queue, dead.id)
        except (Conflict, NotFound) as exc:
            done.append(RetryOutcome(dead.id, dead.job_id, dead.function, None, exc.detail))
        else:
            done.append(RetryOutcome(dead.id, dead.job_id, dead.function, new_job_id))
    return done
