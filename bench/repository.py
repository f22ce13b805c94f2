"""The benchmark's own statements: what no part of the product does, so no repository of it has.

Seeding goes through the product's repositories and services (bench.seed); what is here puts
the database in a known state between phases, or reads figures out of it afterwards.
"""

import asyncpg

from shop.jobs import outbox_repository as outbox_repo

_CLAIM_BATCH = 10_000


async def mark_outbox_delivered(conn: asyncpg.Connection) -> int:
    """Marks every undelivered outbox row delivered, as a relay would; returns how many."""
    total = 0
    while batch := await outbox_repo.claim_pending(conn, _CLAIM_BATCH):
        total += len(batch)
    return total


async def close_pending_orders(conn: asyncpg.Connection) -> None:
    """Cancels every pending order and marks every outbox row delivered.

    The relay re-delivers the jobs of orders still pending (shop/jobs/relay.py): orders placed
    by one phase and left pending would be worked through in the middle of the next one.
    """
    async with conn.transaction():
        await mark_outbox_delivered(conn)
        await conn.execute(
            "UPDATE orders SET status = 'cancelled', cancelled_at = now() WHERE status = 'pending'"
        )
