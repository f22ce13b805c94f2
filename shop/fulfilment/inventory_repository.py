from dataclasses import dataclass

import asyncpg

from shop.jobs.names import JobName, job_id_for
from shop.models import OrderStatus

# Reserving an order's stock in one statement, so one round trip and one atomic commit: lock the
# order, lock its products, take the stock (or reject the order naming what is short), and
# record the confirmation job in the outbox. Locks are taken order row first, then products in
# id order, as every transaction that changes stock takes them, so none can wait in a cycle.
#
# The statement's parts run in an order Postgres does not promise for sibling CTEs; the order
# here is forced instead by scalar subqueries, which Postgres evaluates in full before the scan
# that needs them returns (or locks) a row: the lines are read only once the order row is
# locked, products are locked only once the lines are known, and the stock is taken only from
# products all locked already. A `FOR UPDATE` that waited for another transaction returns the
# row as that transaction left it, and the UPDATE applies its change to that version too.
_RESERVE = """
WITH locked_order AS MATERIALIZED (
    SELECT id, status FROM orders WHERE id = $1 FOR UPDATE
), line AS MATERIALIZED (
    -- No lines unless the order is pending: for any other order nothing below has rows.
    SELECT product_id, quantity FROM order_lines
    WHERE order_id = (SELECT id FROM locked_order WHERE status = 'pending')
), stock AS MATERIALIZED (
    -- NO KEY: orders being placed check their lines' products with KEY SHARE locks, which a
    -- plain FOR UPDATE would make wait until this reservation's commit is flushed.
    SELECT id, stock FROM products
    WHERE id = any((SELECT array_agg(product_id) FROM line)::bigint[])
    ORDER BY id FOR NO KEY UPDATE
), shortage AS MATERIALIZED (
    SELECT string_agg(
               format('product %s (requested %s, available %s)',
                      line.product_id, line.quantity, coalesce(stock.stock, 0)),
               ', ' ORDER BY line.product_id) AS products
    FROM line LEFT JOIN stock ON stock.id = line.product_id
    WHERE coalesce(stock.stock, 0) < line.quantity
), taken AS (
    -- The CHECK (stock >= 0) stays the backstop.
    UPDATE products SET stock = products.stock - line.quantity, updated_at = now()
    FROM line
    WHERE products.id = any((SELECT array_agg(id) FROM stock)::bigint[])
      AND products.id = line.product_id
      AND (SELECT products FROM shortage) IS NULL
), decided AS (
    UPDATE orders SET
        status = CASE WHEN shortage.products IS NULL THEN 'confirmed' ELSE 'rejected' END,
        confirmed_at = CASE WHEN shortage.products IS NULL THEN now() END,
        rejected_at = CASE WHEN shortage.products IS NOT NULL THEN now() END,
        rejection_reason = 'Not enough stock for ' || shortage.products || '.'
    FROM shortage
    WHERE orders.id = (SELECT id FROM locked_order WHERE status = 'pending')
    RETURNING orders.status
), job AS (
    INSERT INTO outbox (job_id, function, args, order_id, request_id)
    SELECT $2, $3, jsonb_build_array($1::bigint), $1, $4
    FROM decided WHERE decided.status = 'confirmed'
    ON CONFLICT (job_id) DO NOTHING
)
SELECT locked_order.status AS before, (SELECT status FROM decided) AS after,
       (SELECT array_agg(product_id ORDER BY product_id) FROM order_lines
        WHERE order_id = $1) AS product_ids
FROM locked_order
"""


@dataclass(frozen=True, slots=True)
class Reservation:
    # What the order was when locked: only a pending order is reserved.
    before: OrderStatus
    # Confirmed or rejected by this reservation; None when the order was not pending.
    after: OrderStatus | None
    # The order's products, in id order.
    product_ids: list[int]


async def reserve(
    conn: asyncpg.Connection, order_id: int, request_id: str | None
) -> Reservation | None:
    """Reserves a pending order's stock (see _RESERVE); None when there is no such order.

    Its own transaction, or part of the caller's (which then holds its locks until it ends).
    """
    row = await conn.fetchrow(
        _RESERVE,
        order_id,
        job_id_for(JobName.SEND_CONFIRMATION, order_id),
        JobName.SEND_CONFIRMATION.value,
        request_id,
    )
    if row is None:
        return None
    return Reservation(
        before=OrderStatus(row["before"]),
        after=None if row["after"] is None else OrderStatus(row["after"]),
        product_ids=list(row["product_ids"] or ()),
    )
