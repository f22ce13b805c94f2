"""The dead-job ledger: recording jobs that will not be retried, and re-driving them."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from arq.connections import ArqRedis

from kit.db import connection
from kit.errors import Conflict, NotFound
from kit.settings import Settings
from ops import queue as queue_inspect
from shop.jobs import dead_job_repository as dead_jobs_repo
from shop.jobs.names import order_id_of


async def record_dead_job(
    pool: asyncpg.Pool,
    settings: Settings,
    *,
    job_id: str,
    function: str,
    args: list[Any],
    kwargs: dict[str, Any],
    error: str,
    traceback: str | None,
    tries: int,
    enqueued_at: datetime | None,
) -> int | None:
    """The ledger row's id, or None when this job's death is recorded already."""
    async with connection(pool, settings.db_pool_acquire_timeout_s) as conn:
        return await dead_jobs_repo.insert(
            conn,
            job_id=job_id,
            function=function,
            args=args,
            kwargs=kwargs,
            order_id=order_id_of(args),
            error=error,
            traceback=traceback,
            tries=tries,
            enqueued_at=enqueued_at,
        )


def redrive_job_id(dead: dead_jobs_repo.DeadJob) -> str:
    """A new id, so ARQ does not drop the job as a duplicate of the one that died."""
    return f"{dead.job_id}:redrive-{dead.id}"


async def redrive(pool: asyncpg.Pool, settings: Settings, queue: ArqRedis, dead_id: int) -> str:
    """Enqueues a dead job again under a new job id and marks the ledger row re-driven.

    The row stays locked while the job is enqueued, so two operators cannot re-drive it twice;
    the jobs are idempotent, so even a re-drive of work that did happen changes nothing.
    """
    async with connection(pool, settings.db_pool_acquire_timeout_s) as conn, conn.transaction():
        dead = await dead_jobs_repo.get(conn, dead_id, lock=True)
        if dead is None:
            raise NotFound(f"There is no dead job {dead_id}.")
        if dead.redriven_at is not None:
            raise Conflict(f"Dead job {dead_id} was re-driven already as {dead.redriven_job_id}.")
        new_job_id = redrive_job_id(dead)
        await queue.enqueue_job(
            dead.function,
            *dead.args,
            _job_id=new_job_id,
            _queue_name=settings.queue_name,
            **dead.kwargs,
        )
        await dead_jobs_repo.mark_redriven(conn, dead_id, new_job_id)
    return new_job_id


@dataclass(frozen=True, slots=True)
class Redrive:
    dead_id: int
    job_id: str
    function: str
    new_job_id: str | None
    error: str | None = None


async def retry_job(
    pool: asyncpg.Pool, settings: Settings, queue: ArqRedis, job_id: str
) -> Redrive:
    """Re-drives one dead or failed job by its ARQ job id.

    A dead job (in the ledger, not yet re-driven) is re-driven as it is. A job that ARQ recorded
    as failed without reaching the ledger (aborted, or failed outside the job wrapper) is first
    written to the ledger, so that every re-drive leaves the same trail. A job that is still
    queued or running, or that completed, is refused.
    """
    job = await queue_inspect.get_job(queue, settings.queue_name, job_id)
    if job is not None and job.status not in (queue_inspect.FAILED,):
        raise Conflict(f"Job {job_id} is {job.status}; only dead or failed jobs are re-driven.")
    async with connection(pool, settings.db_pool_acquire_timeout_s) as conn:
        ledger = await dead_jobs_repo.list_for_job(conn, job_id)
    if not ledger:
        failed = await queue_inspect.get_failed_result(queue, settings.queue_name, job_id)
        if failed is None:
            raise NotFound(f"There is no dead or failed job {job_id}.")
        await record_dead_job(pool, settings, **failed)
        async with connection(pool, settings.db_pool_acquire_timeout_s) as conn:
            ledger = await dead_jobs_repo.list_for_job(conn, job_id)
    pending = [row for row in ledger if row.redriven_at is None]
    if not pending:
        raise Conflict(f"Job {job_id} was re-driven already as {ledger[0].redriven_job_id}.")
    dead = pending[0]
    new_job_id = await redrive(pool, settings, queue, dead.id)
    return Redrive(dead.id, dead.job_id, dead.function, new_job_id)


async def retry_dead(
    pool: asyncpg.Pool,
    settings: Settings,
    queue: ArqRedis,
    *,
    function: str | None = None,
    dry_run: bool = False,
    limit: int = 1000,
) -> list[Redrive]:
    """Re-drives every dead job not yet re-driven (of one function), oldest first.

    One that another operator re-drove meanwhile is reported with its error, not re-driven twice.
    """
    async with connection(pool, settings.db_pool_acquire_timeout_s) as conn:
        rows = await dead_jobs_repo.list_recent(
            conn, function=function, only_pending=True, limit=limit
        )
    done: list[Redrive] = []
    for dead in reversed(rows):
        if dry_run:
            done.append(Redrive(dead.id, dead.job_id, dead.function, None))
            continue
        try:
            new_job_id = await redrive(pool, settings, queue, dead.id)
        except (Conflict, NotFound) as exc:
            done.append(Redrive(dead.id, dead.job_id, dead.function, None, exc.detail))
        else:
            done.append(Redrive(dead.id, dead.job_id, dead.function, new_job_id))
    return done
