"""What `/metrics` reads at scrape time: queue depth and outbox lag."""

import asyncpg
from redis.asyncio import Redis

from kit.db import UNAVAILABLE_ERRORS
from kit.errors import ServiceUnavailable
from kit.metrics import SystemSample
from kit.redis import REDIS_UNAVAILABLE_ERRORS
from kit.settings import Settings
from ops.outbox import outbox_status
from ops.queue import queue_stats

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
        queue = await queue_stats(redis, settings.queue_name, scan_limit=_SCRAPE_SCAN_LIMIT)
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
