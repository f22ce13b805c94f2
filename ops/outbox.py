"""The outbox as operators see it: rows pending, failing, delivered, and the oldest one's age."""

import asyncpg

from kit.db import connection
from kit.settings import Settings
from shop.jobs import outbox_repository as outbox_repo
from shop.jobs.outbox_repository import OutboxStats


async def outbox_status(pool: asyncpg.Pool, settings: Settings) -> OutboxStats:
    async with connection(pool, settings.db_pool_acquire_timeout_s) as conn:
        return await outbox_repo.stats(conn)
