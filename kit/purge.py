"""The one way rows past their retention are deleted: small batches, each its own transaction.

Every purge (idempotency keys, outbox rows, events and their delivery log, dead jobs) hands this
a repository function that deletes up to `batch_size` due rows and says how many it deleted. A
batch takes row locks on what it deletes only, skips rows someone else holds (the repositories'
`FOR UPDATE SKIP LOCKED`), and gives up at once rather than queue behind a table lock
(PURGE_LOCK_TIMEOUT_MS): what is left waits for the next run. Between batches it pauses in
proportion to the batch's own time (PURGE_PAUSE_FACTOR), so that deleting flat out does not
take Postgres from the orders (docs/decisions/0034-bounded-tables.md).
"""

import time
from asyncio import sleep
from collections.abc import Awaitable, Callable

import asyncpg
import structlog

from kit.db import connection, set_local_lock_timeout
from kit.settings import Settings

log = structlog.get_logger(__name__)

# A repository function: deletes up to `limit` rows older than `older_than_s`, returns how many.
DeleteBatch = Callable[[asyncpg.Connection, float, int], Awaitable[int]]


async def purge_in_batches(
    pool: asyncpg.Pool,
    settings: Settings,
    delete_batch: DeleteBatch,
    older_than_s: float,
    *,
    budget_s: float,
    what: str,
) -> int:
    """Runs `delete_batch` until a batch comes back short or about `budget_s` has passed, pausing
    after each batch for PURGE_PAUSE_FACTOR times as long as it took; returns how many rows went.
    Cheap when nothing is due: one indexed range scan that finds nothing."""
    batch_size = settings.purge_batch_size
    deadline = time.monotonic() + budget_s
    purged = 0
    async with connection(pool, settings.db_pool_acquire_timeout_s) as conn:
        while True:
            batch_started = time.monotonic()
            try:
                async with conn.transaction():
                    await set_local_lock_timeout(conn, settings.purge_lock_timeout_ms)
                    deleted = await delete_batch(conn, older_than_s, batch_size)
            except asyncpg.LockNotAvailableError:
                # Something holds a lock on the table (a migration, say): it is not the purge's
                # to wait for.
                log.warning("purge_lock_timeout", what=what, purged=purged)
                return purged
            purged += deleted
            now = time.monotonic()
            if deleted < batch_size or now > deadline:
                return purged
            pause_s = (now - batch_started) * settings.purge_pause_factor
            await sleep(min(pause_s, deadline - now))
