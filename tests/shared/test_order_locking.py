"""Placing an order locks product rows in id order, as the inventory job does: no deadlock."""

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg
import httpx

from shared.schemas import ProductPublic
from tests.app_fixtures import bearer, wait_for
from tests.processes import backends_waiting_for_a_lock, row_locked

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
