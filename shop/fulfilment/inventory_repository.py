from collections.abc import Mapping, Sequence

import asyncpg

from kit import tracing
from shop.jobs.names import JobName, job_id_prefix

# What a batch reservation writes, in one statement once every row it changes is locked (the
# orders by orders_repo.lock_many, then their products by products_repo.lock_stock): each product's
# stock taken once for the whole batch, each order confirmed or rejected, and the confirmation job
# of each confirmed order in the outbox, with the traceparent of the order's request (from the
# order's own outbox row, looked up only when tracing is on: $10) so that it continues the order's
# trace. The CHECK (stock >= 0) stays the backstop.
_RESERVATION = job_id_prefix(JobName.RESERVE_INVENTORY)
_APPLY = f"""
WITH taken AS (
    UPDATE products SET stock = products.stock - take.quantity, updated_at = now()
    FROM unnest($1::bigint[], $2::int[]) AS take(product_id, quantity)
    WHERE products.id = take.product_id
    RETURNING products.id, products.stock
), decided AS (
    UPDATE orders SET
        status = decision.status,
        confirmed_at = CASE WHEN decision.status = 'confirmed' THEN now() END,
        rejected_at = CASE WHEN decision.status = 'rejected' THEN now() END,
        rejection_reason = decision.reason
    FROM unnest($3::bigint[], $4::text[], $5::text[]) AS decision(order_id, status, reason)
    WHERE orders.id = decision.order_id
), job AS (
    INSERT INTO outbox (job_id, function, args, order_id, request_id, traceparent)
    SELECT $6 || confirmed.order_id, $7, jsonb_build_array(confirmed.order_id),
           confirmed.order_id, confirmed.request_id,
           CASE WHEN $10 THEN (SELECT reservation.traceparent FROM outbox AS reservation
                               WHERE reservation.job_id = '{_RESERVATION}' || confirmed.order_id)
           END
    FROM unnest($8::bigint[], $9::text[]) AS confirmed(order_id, request_id)
    ORDER BY confirmed.order_id
    ON CONFLICT (job_id) DO NOTHING
)
SELECT id, stock FROM taken
"""


async def apply(
    conn: asyncpg.Connection,
    *,
    taken: Mapping[int, int],
    confirmed: Mapping[int, str | None],
    rejected: Mapping[int, str],
) -> dict[int, int]:
    """Takes `taken` (quantity by product id), confirms `confirmed` (request id by order id),
    writing their confirmation jobs, rejects `rejected` (reason by order id); returns the new
    stock of the products taken from. Call inside the transaction that locked them all."""
    decided: Sequence[tuple[int, str, str | None]] = [
        *((order_id, "confirmed", None) for order_id in confirmed),
        *((order_id, "rejected", reason) for order_id, reason in rejected.items()),
    ]
    rows = await conn.fetch(
        _APPLY,
        list(taken),
        list(taken.values()),
        [order_id for order_id, _, _ in decided],
        [status for _, status, _ in decided],
        [reason for _, _, reason in decided],
        job_id_prefix(JobName.SEND_CONFIRMATION),
        JobName.SEND_CONFIRMATION.value,
        list(confirmed),
        list(confirmed.values()),
        tracing.enabled(),
    )
    return {row["id"]: row["stock"] for row in rows}
