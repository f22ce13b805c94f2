"""Reserving stock for a batch of orders: each order all lines or none, in one transaction."""

from collections.abc import Mapping, Sequence

import asyncpg

from kit.db import connection
from kit.errors import PermanentJobError
from kit.settings import Settings
from shop.catalogue import repository as products_repo
from shop.catalogue.cache import ProductCache
from shop.fulfilment import inventory_repository
from shop.jobs.outcomes import OrderOutcomes
from shop.models import ORDER_EVENT_BY_STATUS, OrderStatus
from shop.orders import repository as orders_repo
from shop.webhooks import repository as webhooks_repo

_HOLDS_STOCK = frozenset({OrderStatus.PENDING, OrderStatus.CONFIRMED})


async def reserve_inventory(
    pool: asyncpg.Pool,
    settings: Settings,
    cache: ProductCache,
    order_ids: Sequence[int],
    request_ids: Mapping[int, str | None] | None = None,
) -> OrderOutcomes[OrderStatus]:
    """Confirms each pending order whose every line is in stock, else rejects it naming what is
    short; returns each order's status, or for an order that does not exist, why it failed.

    First come, first served: the orders of the batch take stock in id order, each from what the
    ones before it left, as one transaction each in that order would. All in one transaction:
    the order rows are locked first, in id order, then the products in id order, as every
    transaction that changes stock locks them, so none can wait in a cycle; each product's stock
    is written once, and the whole batch costs one commit however many orders share a product.
    Idempotent: an order that is no longer pending is left as it is. Confirmed orders'
    confirmation jobs are in the outbox when this returns; no NOTIFY announces them (the worker
    wakes its own relay: worker.tasks).
    """
    outcomes: OrderOutcomes[OrderStatus] = OrderOutcomes()
    request_ids = request_ids or {}
    async with connection(pool, settings.db_pool_acquire_timeout_s) as conn, conn.transaction():
        orders = await orders_repo.lock_many(conn, order_ids)
        # Also the products of orders an earlier try confirmed: their stock is what the cache
        # is told below, and that try's worker may have died before it told it.
        holding = [order for order in orders if order.status in _HOLDS_STOCK]
        stock = await products_repo.lock_stock(
            conn, sorted({product_id for order in holding for product_id in order.product_ids})
        )
        left = dict(stock)
        confirmed: dict[int, str | None] = {}
        rejected: dict[int, str] = {}
        for order in orders:
            if order.status is not OrderStatus.PENDING:
                outcomes.done[order.id] = order.status
                continue
            lines = list(zip(order.product_ids, order.quantities, strict=True))
            short = [(p, wanted, left.get(p, 0)) for p, wanted in lines if left.get(p, 0) < wanted]
            if short:
                rejected[order.id] = (
                    "Not enough stock for "
                    + ", ".join(
                        f"product {p} (requested {wanted}, available {available})"
                        for p, wanted, available in short
                    )
                    + "."
                )
                outcomes.done[order.id] = OrderStatus.REJECTED
                continue
            for p, wanted in lines:
                left[p] -= wanted
            confirmed[order.id] = request_ids.get(order.id)
            outcomes.done[order.id] = OrderStatus.CONFIRMED
        taken = {p: stock[p] - left[p] for p in stock if left[p] != stock[p]}
        if confirmed or rejected:
            await inventory_repository.apply(
                conn, taken=taken, confirmed=confirmed, rejected=rejected
            )
            # The orders' confirmed and rejected events commit with the decisions, or none does.
            await webhooks_repo.insert_order_events(
                conn,
                {
                    **dict.fromkeys(confirmed, ORDER_EVENT_BY_STATUS[OrderStatus.CONFIRMED]),
                    **dict.fromkeys(rejected, ORDER_EVENT_BY_STATUS[OrderStatus.REJECTED]),
                },
            )
    for order_id in order_ids:
        if order_id not in outcomes.done:
            outcomes.failed[order_id] = _missing(order_id)
    changed = {
        product_id
        for order in holding
        if outcomes.done[order.id] is OrderStatus.CONFIRMED
        for product_id in order.product_ids
    }
    if changed:
        # Also for an order an earlier try confirmed: its worker may have died before it told
        # the cache.
        await cache.stock_taken(sorted(changed))
    return outcomes


def _missing(order_id: int) -> PermanentJobError:
    """The failure of an order that does not exist, raised here so that it carries a traceback."""
    try:
        raise PermanentJobError(f"order {order_id} does not exist")
    except PermanentJobError as exc:
        return exc
