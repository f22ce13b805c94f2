"""Periodic jobs. ARQ runs each scheduled run once across all workers (`unique`).

Every purge goes through kit.purge: bounded batches, each its own short transaction, paced, for
at most half the job timeout, so that it stops itself well before ARQ would cancel it. Not
longer: ARQ holds every job's in-progress lock for the longest timeout of any function plus
10 s, and that is how long the jobs of a killed worker wait before they run again.
"""

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import structlog

from kit.settings import Settings
from shop.jobs import retention
from shop.orders import idempotency
from shop.webhooks import service as webhooks_service
from worker.context import WorkerContext

log = structlog.get_logger(__name__)

Purge = Callable[..., Awaitable[int]]


async def _purge(ctx: dict[str, Any], purge: Purge, event: str) -> int:
    worker: WorkerContext = ctx["worker"]
    pool: asyncpg.Pool = worker.pool
    settings: Settings = worker.settings
    purged = await purge(pool, settings, budget_s=settings.job_timeout_s / 2)
    log.info(event, purged=purged)
    return purged


async def purge_idempotency_keys(ctx: dict[str, Any]) -> int:
    """Forgets Idempotency-Keys older than IDEMPOTENCY_KEY_TTL_S (at least 24 hours)."""
    return await _purge(ctx, idempotency.purge_expired, "idempotency_keys_purged")


async def purge_outbox(ctx: dict[str, Any]) -> int:
    """Forgets outbox rows delivered more than OUTBOX_RETENTION_S ago whose work is done."""
    return await _purge(ctx, retention.purge_outbox, "outbox_purged")


async def purge_dead_jobs(ctx: dict[str, Any]) -> int:
    """Forgets dead jobs retried more than DEAD_JOB_RETENTION_S ago."""
    return await _purge(ctx, retention.purge_dead_jobs, "dead_jobs_purged")


async def purge_webhook_events(ctx: dict[str, Any]) -> int:
    """Forgets events older than EVENT_RETENTION_S, with their deliveries' log."""
    return await _purge(ctx, webhooks_service.purge_events, "webhook_events_purged")
