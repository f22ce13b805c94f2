"""Periodic jobs. ARQ runs each scheduled run once across all workers (`unique`).

Every purge goes through kit.purge: bounded batches, each its own short transaction, for at most
half the job timeout, so that it stops itself well before ARQ would cancel it.
"""

from typing import Any

import structlog

from shop.jobs import retention
from shop.orders import idempotency
from shop.webhooks import service as webhooks_service
from worker.context import WorkerContext

log = structlog.get_logger(__name__)


def purge_budget_s(worker: WorkerContext) -> float:
    return worker.settings.job_timeout_s / 2


async def purge_idempotency_keys(ctx: dict[str, Any]) -> int:
    """Forgets Idempotency-Keys older than IDEMPOTENCY_KEY_TTL_S (at least 24 hours)."""
    worker: WorkerContext = ctx["worker"]
    purged = await idempotency.purge_expired(
        worker.pool, worker.settings, budget_s=purge_budget_s(worker)
    )
    log.info("idempotency_keys_purged", purged=purged)
    return purged


async def purge_outbox(ctx: dict[str, Any]) -> int:
    """Forgets outbox rows delivered more than OUTBOX_RETENTION_S ago whose work is done."""
    worker: WorkerContext = ctx["worker"]
    purged = await retention.purge_outbox(
        worker.pool, worker.settings, budget_s=purge_budget_s(worker)
    )
    log.info("outbox_purged", purged=purged)
    return purged


async def purge_dead_jobs(ctx: dict[str, Any]) -> int:
    """Forgets dead jobs retried more than DEAD_JOB_RETENTION_S ago."""
    worker: WorkerContext = ctx["worker"]
    purged = await retention.purge_dead_jobs(
        worker.pool, worker.settings, budget_s=purge_budget_s(worker)
    )
    log.info("dead_jobs_purged", purged=purged)
    return purged


async def purge_webhook_events(ctx: dict[str, Any]) -> int:
    """Forgets events older than EVENT_RETENTION_S, with their deliveries' log."""
    worker: WorkerContext = ctx["worker"]
    purged = await webhooks_service.purge_events(
        worker.pool, worker.settings, budget_s=purge_budget_s(worker)
    )
    log.info("webhook_events_purged", purged=purged)
    return purged
