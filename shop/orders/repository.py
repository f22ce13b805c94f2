from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from shop.jobs.names import JobName, job_id_prefix
from shop.models import OrderStatus
from shop.orders import idempotency_repository as idempotency_repo
from shop.orders.idempotency_repository import StoredKey
from shop.orders.schemas import Customer, OrderLinePublic, OrderPublic
from shop.webhooks import repository as webhooks_repo

_ORDER_COLUMNS = """o.id, o.status, o.customer_email, o.customer_name, o.total_cents, o.currency,
       o.created_at, o.confirmed_at, o.rejected_at, o.cancelled_at, o.rejection_reason,
       o.confirmation_sent_at, lines.product_ids, lines.quantities, lines.unit_prices"""
_ORDERS_WITH_LINES = """
FROM orders AS o
CROSS JOIN LATERAL (
    SELECT array_agg(l.product_id ORDER BY l.position) AS product_ids,
           array_agg(l.quantity ORDER BY l.position) AS quantities,
           array_agg(l.unit_price_cents ORDER BY l.position) AS unit_prices
    FROM order_lines AS l WHERE l.order_id = o.id
) AS lines
"""
_SELECT_ORDERS = f"SELECT {_ORDER_COLUMNS}{_ORDERS_WITH_LINES}"

# The lines, the outbox row for the inventory job, and the order.created event with its webhook
# deliveries, for each order that new_order inserted.
_LINES_AND_JOB = f"""
new_lines AS (
    INSERT INTO order_lines (order_id, position, product_id, quantity, unit_price_cents)
    SELECT new_order.id, line.position, line.product_id, line.quantity, line.unit_price_cents
    FROM new_order, unnest($7::bigint[], $8::int[], $9::bigint[])
         WITH ORDINALITY AS line(product_id, quantity, unit_price_cents, position)
), new_job AS (
    INSERT INTO outbox (job_id, function, args, order_id, request_id, traceparent)
    SELECT $10 || new_order.id, $11, jsonb_build_array(new_order.id), new_order.id, $6, $12::text
    FROM new_order
), {webhooks_repo.ORDER_CREATED}"""

# One statement, so one atomic commit and one round trip: the order, its lines, the outbox row
# for the inventory job and the order's event. The relay is woken after the commit
# (shop.jobs.relay.RelayWaker).
_INSERT_ORDER = f"""
WITH new_order AS (
    INSERT INTO orders (client_id, customer_email, customer_name, total_cents, currency, request_id)
    VALUES ($1, $2, $3, $4, $5, $6)
    RETURNING id, created_at
), {_LINES_AND_JOB}
SELECT new_order.id, new_order.created_at FROM new_order
"""

# Under an Idempotency-Key an order takes two round trips too. The first reads, before anything
# is written, the response an earlier request stored with the key, the prices, and the id and
# time the order will have, so that its response is rendered before the write that stores it.
_PREPARE_KEYED_ORDER = f"""
SELECT nextval(pg_get_serial_sequence('orders', 'id')) AS order_id, now() AS created_at,
       prices.ids, prices.price_cents, prices.currencies, {idempotency_repo.STORED_COLUMNS}
FROM (
    SELECT array_agg(p.id) AS ids, array_agg(p.price_cents) AS price_cents,
           array_agg(p.currency) AS currencies
    FROM products AS p WHERE p.id = any($3::bigint[])
) AS prices
LEFT JOIN idempotency_keys AS k ON k.client_id = $1 AND k.key = $2
"""

# The second writes orders as _INSERT_ORDER does, each with its key and response (and its
# order.created event, whose data is that response), for several
# requests in one statement (one transaction, one commit: shop.orders.group_commit). Each key's
# advisory lock, held until the statement commits, makes a concurrent request with the same key
# write nothing (its order is not returned: 409); the key's primary key makes a request that
# raced past the lock fail the statement whole (a unique violation: the caller replays).
_INSERT_KEYED_ORDERS = f"""
WITH keyed AS MATERIALIZED (
    SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::bigint[],
                         $6::text[], $7::text[], $8::timestamptz[], $9::text[], $10::text[],
                         $11::bytea[], $12::int[], $13::bytea[], $14::text[], $23::text[])
        AS k(order_id, client_id, customer_email, customer_name, total_cents, currency,
             request_id, created_at, key, endpoint, request_hash, response_status,
             response_body, response_location, traceparent)
), locked AS MATERIALIZED (
    SELECT * FROM keyed WHERE {idempotency_repo.try_lock_sql("$15", "keyed.client_id", "keyed.key")}
), new_order AS (
    INSERT INTO orders (id, client_id, customer_email, customer_name, total_cents, currency,
                        request_id, created_at)
    SELECT order_id, client_id, customer_email, customer_name, total_cents, currency,
           request_id, created_at
    FROM locked
    RETURNING id
), new_lines AS (
    INSERT INTO order_lines (order_id, position, product_id, quantity, unit_price_cents)
    SELECT line.order_id, line.position, line.product_id, line.quantity, line.unit_price_cents
    FROM unnest($16::bigint[], $17::int[], $18::bigint[], $19::int[], $20::bigint[])
         AS line(order_id, position, product_id, quantity, unit_price_cents)
    JOIN locked ON locked.order_id = line.order_id
), new_job AS (
    INSERT INTO outbox (job_id, function, args, order_id, request_id, traceparent)
    SELECT $21 || order_id, $22, jsonb_build_array(order_id), order_id, request_id, traceparent
    FROM locked
), new_key AS (
    INSERT INTO idempotency_keys (client_id, key, endpoint, request_hash, response_status,
                                  response_body, response_location)
    SELECT client_id, key, endpoint, request_hash, response_status, response_body,
           response_location
    FROM locked
), {webhooks_repo.KEYED_ORDERS_CREATED}
SELECT id FROM new_order
"""


@dataclass(frozen=True, slots=True)
class KeyedOrderPlan:
    """What placing an order under a key needs to know before it writes anything."""

    order_id: int
    created_at: datetime
    prices: dict[int, tuple[int, str]]
    stored: StoredKey | None


@dataclass(frozen=True, slots=True)
class PricedLine:
    product_id: int
    quantity: int
    unit_price_cents: int


@dataclass(frozen=True, slots=True)
class LockedOrder:
    id: int
    status: OrderStatus
    product_ids: list[int]
    quantities: list[int]


def _to_public(row: asyncpg.Record) -> OrderPublic:
    return OrderPublic(
        id=row["id"],
        status=row["status"],
        customer=Customer.model_construct(email=row["customer_email"], name=row["customer_name"]),
        items=[
            OrderLinePublic(product_id=p, quantity=q, unit_price_cents=u)
            for p, q, u in zip(
                row["product_ids"], row["quantities"], row["unit_prices"], strict=True
            )
        ],
        total_cents=row["total_cents"],
        currency=row["currency"],
        created_at=row["created_at"],
        confirmed_at=row["confirmed_at"],
        rejected_at=row["rejected_at"],
        cancelled_at=row["cancelled_at"],
        rejection_reason=row["rejection_reason"],
        confirmation_sent_at=row["confirmation_sent_at"],
    )


def _order_parameters(
    client_id: int,
    customer: Customer,
    lines: Sequence[PricedLine],
    total_cents: int,
    currency: str,
    request_id: str | None,
) -> tuple[object, ...]:
    """$1..$11 of both order inserts, keyed or not: they share the order's part of the SQL.
    The unkeyed insert adds $12, the request's traceparent; the keyed one its $23 array."""
    return (
        client_id,
        customer.email,
        customer.name,
        total_cents,
        currency,
        request_id,
        [line.product_id for line in lines],
        [line.quantity for line in lines],
        [line.unit_price_cents for line in lines],
        job_id_prefix(JobName.RESERVE_INVENTORY),
        JobName.RESERVE_INVENTORY.value,
    )


async def insert_with_reservation_job(
    conn: asyncpg.Connection,
    *,
    client_id: int,
    customer: Customer,
    lines: Sequence[PricedLine],
    total_cents: int,
    currency: str,
    request_id: str | None,
    traceparent: str | None = None,
) -> tuple[int, datetime]:
    row = await conn.fetchrow(
        _INSERT_ORDER,
        *_order_parameters(client_id, customer, lines, total_cents, currency, request_id),
        traceparent,
    )
    assert row is not None
    return row["id"], row["created_at"]


async def prepare_keyed(
    conn: asyncpg.Connection, client_id: int, key: str, product_ids: Sequence[int]
) -> KeyedOrderPlan:
    row = await conn.fetchrow(_PREPARE_KEYED_ORDER, client_id, key, product_ids)
    assert row is not None
    prices = dict(
        zip(
            row["ids"] or (),
            zip(row["price_cents"] or (), row["currencies"] or (), strict=True),
            strict=True,
        )
    )
    return KeyedOrderPlan(
        order_id=row["order_id"],
        created_at=row["created_at"],
        prices=prices,
        stored=idempotency_repo.stored_from(row),
    )


@dataclass(frozen=True, slots=True)
class KeyedOrder:
    """An order to write under its Idempotency-Key, with the response to store with the key."""

    plan: KeyedOrderPlan
    client_id: int
    customer: Customer
    lines: Sequence[PricedLine]
    total_cents: int
    currency: str
    request_id: str | None
    key: str
    endpoint: str
    request_hash: bytes
    response_status: int
    response_body: bytes
    response_location: str
    # The W3C traceparent of the request's span, stored with the order's outbox row.
    traceparent: str | None = None


async def insert_keyed_with_reservation_jobs(
    conn: asyncpg.Connection, orders: Sequence[KeyedOrder]
) -> set[int]:
    """The ids of the orders written: not those whose key another request holds. Raises
    asyncpg.UniqueViolationError when a key was stored after its plan was read (or comes twice);
    then nothing was written."""
    lines = [(order.plan.order_id, line) for order in orders for line in order.lines]
    positions = [n for order in orders for n in range(1, len(order.lines) + 1)]
    rows = await conn.fetch(
        _INSERT_KEYED_ORDERS,
        [order.plan.order_id for order in orders],
        [order.client_id for order in orders],
        [order.customer.email for order in orders],
        [order.customer.name for order in orders],
        [order.total_cents for order in orders],
        [order.currency for order in orders],
        [order.request_id for order in orders],
        [order.plan.created_at for order in orders],
        [order.key for order in orders],
        [order.endpoint for order in orders],
        [order.request_hash for order in orders],
        [order.response_status for order in orders],
        [order.response_body for order in orders],
        [order.response_location for order in orders],
        idempotency_repo.LOCK_NAMESPACE,
        [order_id for order_id, _ in lines],
        positions,
        [line.product_id for _, line in lines],
        [line.quantity for _, line in lines],
        [line.unit_price_cents for _, line in lines],
        job_id_prefix(JobName.RESERVE_INVENTORY),
        JobName.RESERVE_INVENTORY.value,
        [order.traceparent for order in orders],
    )
    return {row["id"] for row in rows}


async def get(conn: asyncpg.Connection, order_id: int) -> OrderPublic | None:
    row = await conn.fetchrow(_SELECT_ORDERS + "WHERE o.id = $1", order_id)
    return None if row is None else _to_public(row)


async def get_for_client(
    conn: asyncpg.Connection, order_id: int, client_id: int
) -> OrderPublic | None:
    row = await conn.fetchrow(
        _SELECT_ORDERS + "WHERE o.id = $1 AND o.client_id = $2", order_id, client_id
    )
    return None if row is None else _to_public(row)


async def list_for_client(
    conn: asyncpg.Connection,
    client_id: int,
    *,
    status: OrderStatus | None,
    before_id: int | None,
    limit: int,
) -> list[OrderPublic]:
    """Newest first. Each filter adds a fixed fragment, so every variant keeps a plan that uses
    the (client_id, id) or (client_id, status, id) index."""
    conditions = ["o.client_id = $1"]
    args: list[object] = [client_id]
    if status is not None:
        args.append(status.value)
        conditions.append(f"o.status = ${len(args)}")
    if before_id is not None:
        args.append(before_id)
        conditions.append(f"o.id < ${len(args)}")
    args.append(limit)
    rows = await conn.fetch(
        _SELECT_ORDERS
        + "WHERE "
        + " AND ".join(conditions)
        + f" ORDER BY o.id DESC LIMIT ${len(args)}",
        *args,
    )
    return [_to_public(row) for row in rows]


async def lock(
    conn: asyncpg.Connection, order_id: int, client_id: int | None = None
) -> LockedOrder | None:
    """The order's state and lines, with the order row locked until the transaction ends."""
    if client_id is None:
        row = await conn.fetchrow(
            "SELECT id, status FROM orders WHERE id = $1 FOR UPDATE", order_id
        )
    else:
        row = await conn.fetchrow(
            "SELECT id, status FROM orders WHERE id = $1 AND client_id = $2 FOR UPDATE",
            order_id,
            client_id,
        )
    if row is None:
        return None
    lines = await conn.fetch(
        "SELECT product_id, quantity FROM order_lines WHERE order_id = $1 ORDER BY product_id",
        order_id,
    )
    return LockedOrder(
        id=row["id"],
        status=OrderStatus(row["status"]),
        product_ids=[line["product_id"] for line in lines],
        quantities=[line["quantity"] for line in lines],
    )


async def lock_many(conn: asyncpg.Connection, order_ids: Sequence[int]) -> list[LockedOrder]:
    """The orders that exist among `order_ids`, locked in id order until the transaction ends,
    with their lines in product id order; in id order."""
    rows = await conn.fetch(
        "SELECT o.id, o.status, lines.product_ids, lines.quantities"
        " FROM (SELECT id, status FROM orders WHERE id = any($1::bigint[])"
        "       ORDER BY id FOR UPDATE) AS o"
        " CROSS JOIN LATERAL ("
        "   SELECT coalesce(array_agg(l.product_id ORDER BY l.product_id), '{}') AS product_ids,"
        "          coalesce(array_agg(l.quantity ORDER BY l.product_id), '{}') AS quantities"
        "   FROM order_lines AS l WHERE l.order_id = o.id"
        " ) AS lines"
        " ORDER BY o.id",
        order_ids,
    )
    return [
        LockedOrder(
            id=row["id"],
            status=OrderStatus(row["status"]),
            product_ids=list(row["product_ids"]),
            quantities=list(row["quantities"]),
        )
        for row in rows
    ]


async def get_many(
    conn: asyncpg.Connection, order_ids: Sequence[int], *, dead_job_prefix: str | None = None
) -> dict[int, tuple[OrderPublic, bool]]:
    """The orders that exist among `order_ids`, each with whether the job `dead_job_prefix` +
    its id is recorded as dead and not retried (False without a prefix)."""
    rows = await conn.fetch(
        f"SELECT {_ORDER_COLUMNS},"
        " $2::text IS NOT NULL AND EXISTS (SELECT 1 FROM dead_jobs AS d"
        "   WHERE d.job_id = $2 || o.id AND d.redriven_at IS NULL) AS dead"
        f"{_ORDERS_WITH_LINES}WHERE o.id = any($1::bigint[])",
        order_ids,
        dead_job_prefix,
    )
    return {row["id"]: (_to_public(row), row["dead"]) for row in rows}


async def mark_cancelled(conn: asyncpg.Connection, order_id: int) -> None:
    await conn.execute(
        "UPDATE orders SET status = 'cancelled', cancelled_at = now() WHERE id = $1", order_id
    )


async def mark_confirmations_sent(conn: asyncpg.Connection, order_ids: Sequence[int]) -> None:
    """Notes when each order's confirmation went out; one already noted keeps its time."""
    # The rows are locked in id order, as two such statements that share orders must lock them.
    await conn.execute(
        "UPDATE orders SET confirmation_sent_at = now() WHERE id IN ("
        " SELECT id FROM orders WHERE id = any($1::bigint[]) AND confirmation_sent_at IS NULL"
        " ORDER BY id FOR UPDATE)",
        order_ids,
    )
