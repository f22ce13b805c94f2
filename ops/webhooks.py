"""The operator's view of webhooks: every client's endpoints and how their deliveries stand."""

import asyncpg

from kit.db import connection
from kit.settings import Settings
from shop.webhooks import repository as webhooks_repo
from shop.webhooks.repository import EndpointSummary


async def list_endpoints(
    pool: asyncpg.Pool, settings: Settings, client_id: int | None = None, limit: int = 500
) -> list[EndpointSummary]:
    """Endpoints in id order (one client's, or all), with deliveries pending, delivered, dead."""
    async with connection(pool, settings.db_pool_acquire_timeout_s) as conn:
        return await webhooks_repo.list_all_endpoints(conn, client_id, limit)
