"""How long the outbox and the dead-job ledger keep their rows (docs/operations.md#retention)."""

import asyncpg
import structlog

from kit.db import connection
from kit.purge import purge_in_batches
from kit.settings import Settings
from shop.jobs import dead_job_repository as dead_jobs_repo
from shop.jobs import outbox_repository as outbox_repo

log = structlog.get_logger(__name__)


async def purge_outbox(pool: asyncpg.Pool, settings: Settings, *, budget_s: float) -> int:
    """Deletes rows delivered more than OUTBOX_RETENTION_S ago whose orders' work is done."""
    return await purge_in_batches(
        pool,
        settings,
        outbox_repo.delete_delivered,
        settings.outbox_retention_s,
        budget_s=budget_s,
        what="outbox",
    )


async def purge_dead_jobs(pool: asyncpg.Pool, settings: Settings, *, budget_s: float) -> int:
    """Deletes dead jobs retried more than DEAD_JOB_RETENTION_S ago, and says how many dead jobs
    nobody retried are older than that: those stay until an operator decides."""
    retention_s = settings.dead_job_retention_s
    purged = await purge_in_batches(
        pool,
        settings,
        dead_jobs_repo.delete_retried,
        retention_s,
        budget_s=budget_s,
        what="dead_jobs",
    )
    async with connection(pool, settings.db_pool_acquire_timeout_s) as conn:
        kept = await dead_jobs_repo.count_unretried_older_than(conn, retention_s)
    if kept:
        log.warning("dead_jobs_kept_past_retention", unretried=kept, retention_s=retention_s)
    return purged
