"""Dead jobs: recording a job that will not be retried by itself, and retrying one by hand.

A job dies when its tries are spent or its failure is permanent; the worker records it here
(`dead_jobs` in Postgres), and an operator retries it (`ordersctl retry`, `ops.queue_actions`).
"""

from datetime import datetime
from typing import Any

import asyncpg
from arq.connections import ArqRedis

from kit.db import connection
from kit.errors import Conflict, NotFound
from kit.settings import Settings
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
    """The dead job's id, or None when this job's death is recorded already."""
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


def retry_job_id(dead: dead_jobs_repo.DeadJob) -> str:
    """A new id, so ARQ does not drop the job as a duplicate of the one that died.

    `<job id>:redrive-<dead id>`: the format is kept, as job ids already written carry it.
    """
    return f"{dead.job_id}:redrive-{dead.id}"


async def retry_dead_job(
    pool: asyncpg.Pool, settings: Settings, queue: ArqRedis, dead_id: int
) -> str:
    """Enqueues a dead job again under a new job id and marks it retried; returns the new id.

    The row stays locked while the job is enqueued, so two operators cannot retry it twice;
    the jobs are idempotent, so even a retry of work that did happen changes nothing.
    """
    async with connection(pool, settings.db_pool_acquire_timeout_s) as conn, conn.transaction():
        dead = await dead_jobs_repo.get(conn, dead_id, lock=True)
        if dead is None:
            raise NotFound(f"There is no dead job {dead_id}.")
        if dead.redriven_at is not None:
            raise Conflict(f"Dead job {dead_id} was re-driven already as {dead.redriven_job_id}.")
        new_job_id = retry_job_id(dead)
        await queue.enqueue_job(
            dead.function,
            *dead.args,
            _job_id=new_job_id,
            _queue_name=settings.queue_name,
            **dead.kwargs,
        )
        await dead_jobs_repo.mark_retried(conn, dead_id, new_job_id)
    return new_job_id
