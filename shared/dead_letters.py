"""The dead-job ledger: recording jobs that will not be retried, and re-driving them."""

from datetime import datetime
from typing import Any

import asyncpg
from arq.connections import ArqRedis

from shared.db import connection
from shared.errors import Conflict, NotFound
from shared.repositories import dead_jobs as dead_jobs_repo
from shared.settings import Settings


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
    order_id = args[0] if args and isinstance(args[0], int) else None
    async with connection(pool, settings.db_pool_acquire_timeout_s) as conn:
        return await dead_jobs_repo.insert(
            conn,
            job_id=job_id,
            function=function,
            args=args,
            kwargs=kwargs,
            order_id=order_id,
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
