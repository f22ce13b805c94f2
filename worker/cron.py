"""Periodic jobs. ARQ runs each scheduled run once across all workers (`unique`)."""

from typing import Any

import structlog

from shop.orders import idempotency
from worker.context import WorkerContext

log = structlog.get_logger(__name__)


async def purge_idempotency_keys(ctx: dict[str, Any]) -> int:
    """Forgets Idempotency-Keys older than IDEMPOTENCY_KEY_TTL_S (at least 24 hours)."""
    worker: WorkerContext = ctx["worker"]
    # Half the job timeout: the purge stops itself well before ARQ would cancel it.
    purged = await idempotency.purge_expired(
        worker.pool, worker.settings, budget_s=worker.settings.job_timeout_s / 2
    )
    log.info("idempotency_keys_purged", purged=purged)
    return purged
