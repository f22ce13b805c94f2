"""Placing, reading, listing and cancelling orders: the one place that says how orders work."""

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from kit import tracing
from kit.db import connection
from kit.errors import Conflict, InvalidRequest, NotFound, RequestInProgress
from kit.pagination import decode_cursor, encode_cursor
from kit.settings import Settings
from shop.catalogue import repository as products_repo
from shop.catalogue.cache import ProductCache
from shop.clients.auth import Client
from shop.models import OrderStatus, WebhookEventType
from shop.orders import idempotency
from shop.orders import repository as orders_repo
from shop.orders.group_commit import OrderGroupCommit
from shop.orders.idempotency import IdempotentRequest, StoredResponse
from shop.orders.repository import PricedLine
from shop.orders.schemas import OrderCreate, OrderLinePublic, OrderPage, OrderPublic
from shop.webhooks import repository as webhooks_repo

CANCELLABLE = frozenset({OrderStatus.PENDING, OrderStatus.CONFIRMED})


def _price_lines(
    order: OrderCreate, prices: dict[int, tuple[int, str]]
) -> tuple[list[PricedLine], str]:
    unknown = [
        {"loc": ["body", "items", index, "product_id"], "msg": "unknown product", "type": "unknown"}
        for index, line in enumerate(order.items)
        if line.product_id not in prices
    ]
    if unknown:
        raise InvalidRequest("The order names products that do not exist.", errors=unknown)
    currencies = sorted({prices[line.product_id][1] for line in order.items})
    if len(currencies) > 1:
        raise InvalidRequest(
            f"An order is paid in one currency; these products are priced in {currencies}."
        )
    lines = [
        PricedLine(line.product_id, line.quantity, prices[line.product_id][0])
        for line in order.items
    ]
    return lines, currencies[0]


def total_cents(lines: Sequence[PricedLine]) -> int:
    """What the order costs: its lines at the catalogue's prices, in minor units."""
    return sum(line.quantity * line.unit_price_cents for line in lines)


def order_location(order_id: int) -> str:
    return f"/v1/orders/{order_id}"


async def place_order(
    pool: asyncpg.Pool,
    settings: Settings,
    client: Client,
    order: OrderCreate,
    request_id: str | None,
) -> OrderPublic:
    """Prices the order from the catalogue and stores it with its inventory job, atomically."""
    async with connection(pool, settings.db_pool_acquire_timeout_s) as conn:
        return await _place(conn, client, order, request_id)


async def place_order_once(
    pool: asyncpg.Pool,
    settings: Settings,
    writes: OrderGroupCommit,
    client: Client,
    order: OrderCreate,
    request_id: str | None,
    idempotency_key: str,
) -> StoredResponse:
    """`place_order` under an Idempotency-Key: a retry gets the first response, not a new order.

    Two round trips, as without a key: one reads the stored response (replayed if there is one),
    the prices and the order's id; one writes the order, its job, the key and the response in a
    single statement, shared with the orders placed at the same time (`OrderGroupCommit`). A
    request with the same key writing at that moment makes it a 409.
    """
    request = IdempotentRequest.of(
        client.id, idempotency_key, "POST /v1/orders", order.model_dump_json().encode()
    )
    product_ids = [line.product_id for line in order.items]
    # A second pass only when a request with the same key committed between the two
    # statements: its stored response is then replayed.
    for _ in range(2):
        async with connection(pool, settings.db_pool_acquire_timeout_s) as conn:
            plan = await orders_repo.prepare_keyed(conn, client.id, idempotency_key, product_ids)
        if plan.stored is not None:
            return idempotency.replay(request, plan.stored)
        lines, currency = _price_lines(order, plan.prices)
        total = total_cents(lines)
        placed = _pending(plan.order_id, plan.created_at, order, lines, total, currency)
        response = StoredResponse(
            status=201, body=placed.model_dump_json().encode(), location=order_location(placed.id)
        )
        keyed = orders_repo.KeyedOrder(
            plan=plan,
            client_id=client.id,
            customer=order.customer,
            lines=lines,
            total_cents=total,
            currency=currency,
            request_id=request_id,
            traceparent=tracing.current_traceparent(),
            key=idempotency_key,
            endpoint=request.endpoint,
            request_hash=request.request_hash,
            response_status=response.status,
            response_body=response.body,
            response_location=order_location(placed.id),
        )
        try:
            written = await writes.write(keyed)
        except asyncpg.UniqueViolationError:
            continue
        if not written:
            raise RequestInProgress(idempotency.IN_PROGRESS)
        return response
    raise RequestInProgress(idempotency.JUST_COMPLETED)


async def _place(
    conn: asyncpg.Connection, client: Client, order: OrderCreate, request_id: str | None
) -> OrderPublic:
    prices = await products_repo.prices(conn, [line.product_id for line in order.items])
    lines, currency = _price_lines(order, prices)
    total = total_cents(lines)
    order_id, created_at = await orders_repo.insert_with_reservation_job(
        conn,
        client_id=client.id,
        customer=order.customer,
        lines=lines,
        total_cents=total,
        currency=currency,
        request_id=request_id,
        traceparent=tracing.current_traceparent(),
    )
    return _pending(order_id, created_at, order, lines, total, currency)


def _pending(
    order_id: int,
    created_at: datetime,
    order: OrderCreate,
    lines: Sequence[PricedLine],
    total_cents: int,
    currency: str,
) -> OrderPublic:
    return OrderPublic(
        id=order_id,
        status=OrderStatus.PENDING,
        customer=order.customer,
        items=[
            OrderLinePublic(
                product_id=line.product_id,
                quantity=line.quantity,
                unit_price_cents=line.unit_price_cents,
            )
            for line in lines
        ],
        total_cents=total_cents,
        currency=currency,
        created_at=created_at,
        confirmed_at=None,
        rejected_at=None,
        cancelled_at=None,
        rejection_reason=None,
        confirmation_sent_at=None,
    )


async def get_order(
    pool: asyncpg.Pool, settings: Settings, client: Client, order_id: int
) -> OrderPublic:
    async with connection(pool, settings.db_pool_acquire_timeout_s) as conn:
        order = await orders_repo.get_for_client(conn, order_id, client.id)
    if order is None:
        raise NotFound(f"There is no order {order_id}.")
    return order


async def list_orders(
    pool: asyncpg.Pool,
    settings: Settings,
    client: Client,
    *,
    status: OrderStatus | None,
    limit: int,
    cursor: str | None,
) -> OrderPage:
    before_id = None if cursor is None else decode_cursor(cursor)
    async with connection(pool, settings.db_pool_acquire_timeout_s) as conn:
        # One row more than asked tells whether there is a next page without a count query.
        orders = await orders_repo.list_for_client(
            conn, client.id, status=status, before_id=before_id, limit=limit + 1
        )
    page = orders[:limit]
    next_cursor = encode_cursor(page[-1].id) if len(orders) > limit else None
    return OrderPage(data=page, next_cursor=next_cursor)


async def cancel_order(
    pool: asyncpg.Pool,
    settings: Settings,
    cache: ProductCache,
    client: Client,
    order_id: int,
) -> OrderPublic:
    """Cancels a pending or confirmed order, returning reserved stock to the catalogue."""
    async with connection(pool, settings.db_pool_acquire_timeout_s) as conn, conn.transaction():
        cancelled, released = await _cancel(conn, client, order_id)
    if released:
        await cache.invalidate_products(released)
    return cancelled


async def cancel_order_once(
    pool: asyncpg.Pool,
    settings: Settings,
    cache: ProductCache,
    client: Client,
    order_id: int,
    idempotency_key: str,
) -> StoredResponse:
    """`cancel_order` under an Idempotency-Key: a retry gets the first response, not a 409."""
    request = IdempotentRequest.of(
        client.id, idempotency_key, f"POST {order_location(order_id)}/cancel"
    )
    released: Sequence[int] = ()

    async def work(conn: asyncpg.Connection) -> StoredResponse:
        nonlocal released
        cancelled, released = await _cancel(conn, client, order_id)
        return StoredResponse(status=200, body=cancelled.model_dump_json().encode())

    async with connection(pool, settings.db_pool_acquire_timeout_s) as conn:
        response = await idempotency.run_once(conn, request, work)
    if released:
        await cache.invalidate_products(released)
    return response


async def _cancel(
    conn: asyncpg.Connection, client: Client, order_id: int
) -> tuple[OrderPublic, Sequence[int]]:
    """Call inside a transaction; returns the cancelled order and the products whose stock
    returned, whose cache entries the caller invalidates after the commit."""
    order = await orders_repo.lock(conn, order_id, client_id=client.id)
    if order is None:
        raise NotFound(f"There is no order {order_id}.")
    if order.status not in CANCELLABLE:
        raise Conflict(
            f"Order {order_id} is {order.status}; only pending or confirmed orders"
            " can be cancelled.",
            order_status=order.status.value,
        )
    released: Sequence[int] = ()
    if order.status is OrderStatus.CONFIRMED:
        await products_repo.lock_stock(conn, order.product_ids)
        await products_repo.add_stock(conn, order.product_ids, order.quantities)
        released = order.product_ids
    await orders_repo.mark_cancelled(conn, order_id)
    await webhooks_repo.insert_order_events(conn, {order_id: WebhookEventType.ORDER_CANCELLED})
    cancelled = await orders_repo.get(conn, order_id)
    assert cancelled is not None
    return cancelled, released
