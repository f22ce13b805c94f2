"""Reserving a batch of orders: one transaction, first come first served per product."""

import random
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg
import httpx

from kit.errors import PermanentJobError
from shop.catalogue.schemas import ProductPublic
from shop.fulfilment.inventory import reserve_inventory
from tests.app_fixtures import bearer, stock_of
from worker.context import WorkerContext

MakeProduct = Callable[..., Coroutine[Any, Any, ProductPublic]]


async def place(api: httpx.AsyncClient, key: str, lines: dict[int, int]) -> int:
    response = await api.post(
        "/v1/orders",
        json={
            "customer": {"email": "ada@example.com", "name": "Ada Lovelace"},
            "items": [{"product_id": p, "quantity": q} for p, q in lines.items()],
        },
        headers=bearer(key),
    )
    assert response.status_code == 201, response.text
    order_id: int = response.json()["id"]
    return order_id


async def reserve(worker: WorkerContext, order_ids: list[int]) -> Any:
    return await reserve_inventory(worker.pool, worker.settings, worker.cache, order_ids)


async def test_a_batch_confirms_first_come_first_served_per_product_and_rejects_what_does_not_fit(
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    worker_context: WorkerContext,
    db: asyncpg.Pool,
) -> None:
    a = await make_product(stock=5)
    b = await make_product(stock=2)
    first = await place(api, client_key, {a.id: 3})
    too_many = await place(api, client_key, {a.id: 3})
    fits = await place(api, client_key, {a.id: 2})
    short_of_both = await place(api, client_key, {b.id: 3, a.id: 1})
    last = await place(api, client_key, {b.id: 2})
    order_ids = [first, too_many, fits, short_of_both, last]

    # Handed over in any order, the orders take stock in id order.
    outcomes = await reserve(worker_context, random.sample(order_ids, len(order_ids)))

    assert outcomes.failed == {}
    assert outcomes.done == {
        first: "confirmed",
        too_many: "rejected",
        fits: "confirmed",
        short_of_both: "rejected",
        last: "confirmed",
    }
    reasons = dict(
        await db.fetch(
            "SELECT id, rejection_reason FROM orders WHERE status = 'rejected' ORDER BY id"
        )
    )
    assert reasons == {
        too_many: f"Not enough stock for product {a.id} (requested 3, available 2).",
        short_of_both: f"Not enough stock for product {a.id} (requested 1, available 0),"
        f" product {b.id} (requested 3, available 2).",
    }
    # All lines or none: the order short of b took none of a either.
    assert [await stock_of(db, a.id), await stock_of(db, b.id)] == [0, 0]
    jobs = await db.fetch("SELECT job_id FROM outbox WHERE function = 'send_confirmation'")
    assert sorted(row["job_id"] for row in jobs) == sorted(
        f"send_confirmation:{order_id}" for order_id in (first, fits, last)
    )
    # One transaction wrote every order and product of the batch.
    writers = await db.fetchval(
        "SELECT count(DISTINCT xmin::text) FROM (SELECT xmin FROM orders WHERE id = any($1)"
        " UNION ALL SELECT xmin FROM products WHERE id = any($2)) AS written",
        order_ids,
        [a.id, b.id],
    )
    assert writers == 1


async def test_a_batch_run_again_changes_nothing(
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    worker_context: WorkerContext,
    db: asyncpg.Pool,
) -> None:
    product = await make_product(stock=3)
    order_ids = [await place(api, client_key, {product.id: 2}) for _ in range(2)]
    first = await reserve(worker_context, order_ids)
    before = await db.fetch("SELECT id, status, xmin::text FROM orders ORDER BY id")
    outbox_before = await db.fetch("SELECT id, job_id FROM outbox ORDER BY id")

    again = await reserve(worker_context, order_ids)

    assert again.done == first.done == {order_ids[0]: "confirmed", order_ids[1]: "rejected"}
    assert await db.fetch("SELECT id, status, xmin::text FROM orders ORDER BY id") == before
    assert await db.fetch("SELECT id, job_id FROM outbox ORDER BY id") == outbox_before
    assert await stock_of(db, product.id) == 1


async def test_an_order_that_does_not_exist_fails_alone_and_the_rest_are_reserved(
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    worker_context: WorkerContext,
    db: asyncpg.Pool,
) -> None:
    product = await make_product(stock=5)
    real = await place(api, client_key, {product.id: 1})
    missing = real + 1000

    outcomes = await reserve(worker_context, [missing, real])

    assert outcomes.done == {real: "confirmed"}
    assert list(outcomes.failed) == [missing]
    assert isinstance(outcomes.failed[missing], PermanentJobError)
    assert str(outcomes.failed[missing]) == f"order {missing} does not exist"
    assert await stock_of(db, product.id) == 4
