"""Reserving stock for an order: all lines or none, in one transaction."""

import asyncpg

from shared.catalogue import ProductCache
from shared.db import connection
from shared.errors import PermanentJobError
from shared.jobs import JobName
from shared.models import OrderStatus
from shared.repositories import orders as orders_repo
from shared.repositories import outbox as outbox_repo
from shared.repositories import products as products_repo
from shared.settings import Settings


async def reserve_stock(
    pool: asyncpg.Pool,
    settings: Settings,
    cache: ProductCache,
    order_id: int,
    request_id: str | None = None,
) -> OrderStatus:
    """Confirms the order if every line is in stock, else rejects it naming what is short.

    Idempotent: an order that is no longer pending is left as it is. The order row is locked
    first and product rows in id order, so concurrent reservations and cancellations serialise
    without deadlocks, and the CHECK constraint keeps stock from ever going negative.
    """
    async with connection(pool, settings.db_pool_acquire_timeout_s) as conn, conn.transaction():
        order = await orders_repo.lock(conn, order_id)
        if order is None:
            raise PermanentJobError(f"order {order_id} does not exist")
        if order.status is not OrderStatus.PENDING:
            return order.status
        stock = await products_repo.lock_stock(conn, order.product_ids)
        shortages = [
            f"product {product_id} (requested {quantity}, available {stock.get(product_id, 0)})"
            for product_id, quantity in zip(order.product_ids, order.quantities, strict=True)
            if stock.get(product_id, 0) < quantity
        ]
        if shortages:
            await orders_repo.mark_rejected(
                conn, order_id, "Not enough stock for " + ", ".join(shortages) + "."
            )
            return OrderStatus.REJECTED
        await products_repo.add_stock(
            conn, order.product_ids, [-quantity for quantity in order.quantities]
        )
        await orders_repo.mark_confirmed(conn, order_id)
        await outbox_repo.add_order_job(conn, JobName.SEND_CONFIRMATION, order_id, request_id)
    await cache.invalidate_products(order.product_ids)
    return OrderStatus.CONFIRMED
