"""Faults answered well: Postgres gone, a spike larger than the pool, Redis gone.

Every fault is real: the test Postgres and Redis are stopped, or Postgres locks hold requests.
"""

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import asyncpg
import httpx
import pytest

from kit.settings import Settings
from shop.catalogue.schemas import ProductPublic
from tests.api.test_idempotency import keyed
from tests.api.test_orders import count_rows, order_body
from tests.app_fixtures import api_with, bearer, wait_for
from tests.processes import writes_held

MakeProduct = Callable[..., Coroutine[Any, Any, ProductPublic]]

POOL_SIZE = 2
SPIKE = 40


def assert_retry_later(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "1"
    assert response.json()["status"] == 503
    assert "Traceback" not in response.text


@pytest.mark.slow
async def test_postgres_down_is_503_with_retry_after_and_the_pool_recovers_by_itself(
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    pg_service: Any,
    db: asyncpg.Pool,
) -> None:
    product = await make_product()
    body = order_body((product.id, 1))
    # The pool holds open connections, which die with the server.
    assert (await api.post("/v1/orders", json=body, headers=bearer(client_key))).status_code == 201

    pg_service.stop()
    try:
        place = await api.post("/v1/orders", json=body, headers=bearer(client_key))
        place_keyed = await api.post("/v1/orders", json=body, headers=keyed(client_key, "k"))
        listing = await api.get("/v1/orders", headers=bearer(client_key))
        # An uncached key needs Postgres to be checked: unavailable, not unauthorised.
        unknown_key = await api.get("/v1/orders", headers=bearer("ord_not-cached"))
        alive = await api.get("/healthz")
        ready = await api.get("/readyz")
    finally:
        pg_service.start()
    # No restart of the app and no retry loop: the very next request gets a fresh connection.
    after = await api.post("/v1/orders", json=body, headers=keyed(client_key, "k"))

    for response in (place, place_keyed, listing, unknown_key):
        assert_retry_later(response)
    assert alive.status_code == 200
    assert ready.status_code == 503
    assert ready.json()["checks"]["postgres"].startswith("unavailable")
    assert after.status_code == 201
    assert "idempotent-replayed" not in after.headers
    assert (await count_rows(db))["orders"] == 2


@pytest.fixture
async def small_pool_api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api_with(
        settings,
        db_pool_min_size=POOL_SIZE,
        db_pool_max_size=POOL_SIZE,
        db_pool_acquire_timeout_s=0.2,
    ) as client:
        yield client


@pytest.mark.slow
async def test_a_spike_larger_than_the_pool_gets_503_fast_and_the_process_stays_responsive(
    small_pool_api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    db: asyncpg.Pool,
) -> None:
    product = await make_product(stock=100)
    body = order_body((product.id, 1))
    api = small_pool_api
    # Caches the key, so that the spike's requests need a connection only for the order.
    assert (await api.get("/v1/orders", headers=bearer(client_key))).status_code == 200

    async with db.acquire() as blocker, blocker.transaction():
        # Every order reads the catalogue first: while this lock is held, the first requests
        # hold their connections, waiting, and the rest find the pool empty.
        await blocker.execute("LOCK TABLE products IN ACCESS EXCLUSIVE MODE")
        spike = [
            asyncio.create_task(api.post("/v1/orders", json=body, headers=bearer(client_key)))
            for _ in range(SPIKE)
        ]

        async def the_rest_answered() -> bool:
            return sum(task.done() for task in spike) >= SPIKE - POOL_SIZE

        await wait_for(the_rest_answered, timeout_s=15)
        alive = await api.get("/healthz")
        written_during_spike = await count_rows(db)
    responses = await asyncio.gather(*spike)
    after = await api.post("/v1/orders", json=body, headers=bearer(client_key))

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201] * POOL_SIZE + [503] * (SPIKE - POOL_SIZE)
    for response in responses:
        if response.status_code == 503:
            assert_retry_later(response)
    assert alive.status_code == 200
    assert written_during_spike["orders"] == 0
    assert after.status_code == 201
    assert (await count_rows(db))["orders"] == POOL_SIZE + 1


async def test_keyed_orders_and_catalogue_lists_work_while_redis_is_down(
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    redis_service: Any,
) -> None:
    product = await make_product()
    body = order_body((product.id, 1))
    redis_service.stop()
    try:
        first = await api.post("/v1/orders", json=body, headers=keyed(client_key, "k"))
        retry = await api.post("/v1/orders", json=body, headers=keyed(client_key, "k"))
        listed = await api.get("/v1/products", headers=bearer(client_key))
    finally:
        redis_service.start()

    assert first.status_code == 201
    assert retry.headers["idempotent-replayed"] == "true"
    assert listed.status_code == 200
    assert [p["id"] for p in listed.json()["data"]] == [product.id]


async def test_a_statement_timeout_on_a_locked_row_is_503_and_writes_nothing(
    settings: Settings,
    client_key: str,
    make_product: MakeProduct,
    db: asyncpg.Pool,
) -> None:
    product = await make_product()
    # An operator's long transaction (a migration, say) locks the orders table: the order's
    # insert waits on it until the statement timeout cancels it.
    async with (
        api_with(settings, db_statement_timeout_ms=300) as impatient_api,
        writes_held(db, "orders"),
    ):
        response = await impatient_api.post(
            "/v1/orders", json=order_body((product.id, 1)), headers=bearer(client_key)
        )

    assert_retry_later(response)
    assert await count_rows(db) == {"orders": 0, "order_lines": 0, "outbox": 0}
