"""Placing an order locks product rows in id order, as the inventory job does: no deadlock."""

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg
import httpx

from shop.catalogue.schemas import ProductPublic
from shop.fulfilment.inventory import reserve_inventory
from tests.app_fixtures import bearer, stock_of, wait_for
from tests.processes import backends_waiting_for_a_lock, row_locked
from worker.context import WorkerContext

MakeProduct = Callable[..., Coroutine[Any, Any, ProductPublic]]


async def test_an_orders_lines_lock_their_products_in_id_order(
    api: httpx.AsyncClient, client_key: str, make_product: MakeProduct, db: asyncpg.Pool
) -> None:
    low = await make_product()
    high = await make_product()
    body = {
        "customer": {"email": "ada@example.com", "name": "Ada Lovelace"},
        # Sent high id first: locking in the order sent would take `high` and wait for `low`,
        # while the inventory job takes `low` and waits for `high`, a deadlock.
        "items": [{"product_id": high.id, "quantity": 1}, {"product_id": low.id, "quantity": 1}],
    }
    async with row_locked(db, "products", low.id):
        placing = asyncio.create_task(api.post("/v1/orders", json=body, headers=bearer(client_key)))

        async def waiting() -> bool:
            return await backends_waiting_for_a_lock(db, "orders-api") == 1

        await wait_for(waiting, timeout_s=10)
        # The order waits for `low` without holding `high`: the inventory job could take it.
        async with db.acquire() as conn, conn.transaction():
            await conn.execute("SELECT 1 FROM products WHERE id = $1 FOR UPDATE NOWAIT", high.id)
    response = await placing

    assert response.status_code == 201, response.text
    assert [line["product_id"] for line in response.json()["items"]] == [high.id, low.id]


async def test_a_reservation_locks_the_order_first_then_products_in_id_order(
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    db: asyncpg.Pool,
    worker_context: WorkerContext,
) -> None:
    low = await make_product(stock=5)
    high = await make_product(stock=5)
    body = {
        "customer": {"email": "ada@example.com", "name": "Ada Lovelace"},
        "items": [{"product_id": high.id, "quantity": 1}, {"product_id": low.id, "quantity": 2}],
    }
    response = await api.post("/v1/orders", json=body, headers=bearer(client_key))
    order_id = response.json()["id"]

    async def waiting() -> bool:
        return await backends_waiting_for_a_lock(db, "orders-worker") == 1

    async def nothing_locked_but(*held: tuple[str, int]) -> None:
        rows = [("orders", order_id), ("products", low.id), ("products", high.id)]
        async with db.acquire() as conn, conn.transaction():
            for table, row_id in rows:
                if (table, row_id) not in held:
                    await conn.execute(
                        f"SELECT 1 FROM {table} WHERE id = $1 FOR UPDATE NOWAIT", row_id
                    )

    reserve = worker_context.pool, worker_context.settings, worker_context.cache, [order_id]
    async with row_locked(db, "orders", order_id):
        reserving = asyncio.create_task(reserve_inventory(*reserve))
        await wait_for(waiting, timeout_s=10)
        # Waiting for the order, the reservation holds no product.
        await nothing_locked_but(("orders", order_id))
    assert (await reserving).done == {order_id: "confirmed"}

    again = await api.post("/v1/orders", json=body, headers=bearer(client_key))
    order_id = again.json()["id"]
    reserve = worker_context.pool, worker_context.settings, worker_context.cache, [order_id]
    async with row_locked(db, "products", low.id):
        reserving = asyncio.create_task(reserve_inventory(*reserve))
        await wait_for(waiting, timeout_s=10)
        # Waiting for `low`, it holds the order but not `high`: a cancellation or another
        # reservation could take `high` without a deadlock.
        await nothing_locked_but(("orders", order_id), ("products", low.id))
    assert (await reserving).done == {order_id: "confirmed"}
    assert [await stock_of(db, p.id) for p in (low, high)] == [1, 3]
