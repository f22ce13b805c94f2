"""Reserving stock for an order: all lines or none, in one transaction."""

import asyncpg

from kit.db import connection
from kit.errors import PermanentJobError
from kit.settings import Settings
from shop.catalogue.cache import ProductCache
from shop.fulfilment import inventory_repository
from shop.models import ORDER_EVENT_BY_STATUS, OrderStatus
from shop.webhooks import repository as webhooks_repo


async def reserve_inventory(
    pool: asyncpg.Pool,
    settings: Settings,
    cache: ProductCache,
    order_id: int,
    request_id: str | None = None,
) -> OrderStatus:
    """Confirms the order if every line is in stock, else rejects it naming what is short.

    Idempotent: an order that is no longer pending is left as it is. The order row is locked
    first and product rows in id order, so concurrent reservations and cancellations serialise
    without deadlocks, and the CHECK constraint keeps stock from ever going negative. A
    confirmed order's confirmation job is in the outbox when this returns; no NOTIFY announces
    it (the worker wakes its own relay: worker.tasks).
    """
    async with connection(pool, settings.db_pool_acquire_timeout_s) as conn, conn.transaction():
        reservation = await inventory_repository.reserve(conn, order_id, request_id)
        # The order's confirmed or rejected event commits with the decision, or neither does.
        if reservation is not None and reservation.after is not None:
            await webhooks_repo.insert_order_events(
                conn, {order_id: ORDER_EVENT_BY_STATUS[reservation.after]}
            )
    if reservation is None:
        raise PermanentJobError(f"order {order_id} does not exist")
    status = reservation.after or reservation.before
    if status is OrderStatus.CONFIRMED:
        # Also when an earlier try confirmed the order: its worker may have died before it
        # refreshed the cache (its statement commits even then, once its locks are granted).
        await cache.stock_taken(reservation.product_ids)
    return status
