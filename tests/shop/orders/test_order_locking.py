"""Who locks which rows: placing an order none of its products; a reservation the order, then
its products in id order, as every transaction that changes stock does, so none deadlock."""

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


async def test_placing_an_order_locks_no_product_row(
    api: httpx.AsyncClient, client_key: str, make_product: MakeProduct, db: asyncpg.Pool
) -> None:
    first = await make_product()
    second = await make_product()
    body = {
        "customer": {"email": "ada@example.com", "name": "Ada Lovelace"},
        "items": [
            {"product_id": second.id, "quantity": 1},
            {"product_id": first.id, "quantity": 1},
        ],
    }
    # As a reservation holds them: orders for a product being sold do not queue behind it.
    async with row_locked(db, "products", first.id), row_locked(db, "products", second.id):
        async with asyncio.timeout(10):
            response = await api.post("/v1/orders", json=body, headers=bearer(client_key))

    assert response.status_code == 201, response.text
    assert [line["product_id"] for line in response.json()["items"]] == [second.id, first.id]


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
