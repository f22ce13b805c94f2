"""Idempotency-Key on POST /v1/orders and POST /v1/orders/{id}/cancel, on real Postgres."""

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest

from shop.catalogue.schemas import ProductPublic
from shop.clients.auth import hash_api_key
from tests.api.test_orders import count_rows, order_body
from tests.app_fixtures import JobRunner, bearer, stock_of, wait_for

MakeProduct = Callable[..., Coroutine[Any, Any, ProductPublic]]


def keyed(api_key: str, idempotency_key: str) -> dict[str, str]:
    return {**bearer(api_key), "Idempotency-Key": idempotency_key}


@asynccontextmanager
async def key_row_held(db: asyncpg.Pool, api_key: str, key: str) -> AsyncIterator[None]:
    """An uncommitted row for the key: a request's write of the same key waits until we leave.

    The request does not see the row (it is not committed), so it goes ahead as a first request
    and stops at the end of its statement, after the order and before its commit.
    """
    async with db.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        try:
            await conn.execute(
                "INSERT INTO idempotency_keys (client_id, key, endpoint, request_hash,"
                " response_status, response_body)"
                " SELECT id, $2, 'test', '', 0, '' FROM clients WHERE key_hash = $1",
                hash_api_key(api_key),
                key,
            )
            yield
        finally:
            await transaction.rollback()


async def api_backend_waiting_for_a_lock(db: asyncpg.Pool) -> int:
    pid: int | None = None

    async def waiting() -> bool:
        nonlocal pid
        pid = await db.fetchval(
            "SELECT pid FROM pg_stat_activity"
            " WHERE application_name = 'orders-api' AND wait_event_type = 'Lock'"
        )
        return pid is not None

    await wait_for(waiting, timeout_s=10)
    assert pid is not None
    return pid


async def test_a_retried_order_replays_the_first_response_and_places_one_order(
    api: httpx.AsyncClient, client_key: str, make_product: MakeProduct, db: asyncpg.Pool
) -> None:
    product = await make_product()
    body = order_body((product.id, 2))

    first = await api.post("/v1/orders", json=body, headers=keyed(client_key, "order-1"))
    retry = await api.post("/v1/orders", json=body, headers=keyed(client_key, "order-1"))

    assert first.status_code == 201
    assert "idempotent-replayed" not in first.headers
    assert retry.status_code == 201
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.headers["location"] == first.headers["location"]
    assert retry.headers["location"] == f"/v1/orders/{first.json()['id']}"
    assert retry.headers["content-type"] == "application/json"
    assert retry.content == first.content
    assert await count_rows(db) == {"orders": 1, "order_lines": 1, "outbox": 1}


async def test_a_replay_is_the_first_response_even_after_the_order_moved_on(
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    jobs: JobRunner,
) -> None:
    product = await make_product()
    body = order_body((product.id, 1))
    first = await api.post("/v1/orders", json=body, headers=keyed(client_key, "k"))
    await jobs.run_until_idle()

    retry = await api.post("/v1/orders", json=body, headers=keyed(client_key, "k"))
    current = await api.get(first.headers["location"], headers=bearer(client_key))

    assert retry.json()["status"] == "pending"
    assert current.json()["status"] == "confirmed"
    # The stored response names the order as it is stored: same id, same creation time.
    assert retry.json()["id"] == current.json()["id"]
    assert retry.json()["created_at"] == current.json()["created_at"]
    assert retry.json()["items"] == current.json()["items"]


async def test_the_same_key_with_a_different_body_is_422_and_writes_nothing(
    api: httpx.AsyncClient, client_key: str, make_product: MakeProduct, db: asyncpg.Pool
) -> None:
    product = await make_product()
    await api.post("/v1/orders", json=order_body((product.id, 1)), headers=keyed(client_key, "k"))

    response = await api.post(
        "/v1/orders", json=order_body((product.id, 2)), headers=keyed(client_key, "k")
    )

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert "different request body" in response.json()["detail"]
    assert await count_rows(db) == {"orders": 1, "order_lines": 1, "outbox": 1}


async def test_the_same_key_on_another_endpoint_is_422(
    api: httpx.AsyncClient, client_key: str, make_product: MakeProduct, db: asyncpg.Pool
) -> None:
    product = await make_product()
    placed = await api.post(
        "/v1/orders", json=order_body((product.id, 1)), headers=keyed(client_key, "k")
    )

    response = await api.post(
        f"/v1/orders/{placed.json()['id']}/cancel", headers=keyed(client_key, "k")
    )

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert "POST /v1/orders" in response.json()["detail"]
    assert await db.fetchval("SELECT status FROM orders") == "pending"


async def test_the_same_body_in_another_json_layout_is_the_same_request(
    api: httpx.AsyncClient, client_key: str, make_product: MakeProduct, db: asyncpg.Pool
) -> None:
    product = await make_product()
    compact = (
        f'{{"items":[{{"quantity":1,"product_id":{product.id}}}],'
        '"customer":{"name":"Ada","email":"ada@example.com"}}'
    )
    spaced = (
        '{ "customer": { "email": "ada@example.com", "name": "Ada" },\n'
        f'  "items": [ {{ "product_id": {product.id}, "quantity": 1 }} ] }}'
    )
    headers = {**keyed(client_key, "k"), "content-type": "application/json"}

    first = await api.post("/v1/orders", content=compact, headers=headers)
    retry = await api.post("/v1/orders", content=spaced, headers=headers)

    assert first.status_code == retry.status_code == 201
    assert retry.headers["idempotent-replayed"] == "true"
    assert (await count_rows(db))["orders"] == 1


async def test_two_clients_may_use_the_same_key(
    api: httpx.AsyncClient,
    client_key: str,
    other_client_key: str,
    make_product: MakeProduct,
    db: asyncpg.Pool,
) -> None:
    product = await make_product()
    body = order_body((product.id, 1))

    mine = await api.post("/v1/orders", json=body, headers=keyed(client_key, "shared-key"))
    theirs = await api.post("/v1/orders", json=body, headers=keyed(other_client_key, "shared-key"))

    assert mine.status_code == theirs.status_code == 201
    assert "idempotent-replayed" not in theirs.headers
    assert mine.json()["id"] != theirs.json()["id"]
    assert (await count_rows(db))["orders"] == 2


async def test_a_key_whose_first_request_is_still_running_is_409(
    api: httpx.AsyncClient, client_key: str, make_product: MakeProduct, db: asyncpg.Pool
) -> None:
    product = await make_product()
    body = order_body((product.id, 1))

    # The first request's write of the key waits for ours, after it has written the order.
    async with key_row_held(db, client_key, "k"):
        first = asyncio.create_task(
            api.post("/v1/orders", json=body, headers=keyed(client_key, "k"))
        )
        await api_backend_waiting_for_a_lock(db)
        concurrent = await api.post("/v1/orders", json=body, headers=keyed(client_key, "k"))
    completed = await first
    retry = await api.post("/v1/orders", json=body, headers=keyed(client_key, "k"))

    assert concurrent.status_code == 409
    assert concurrent.headers["content-type"] == "application/problem+json"
    assert concurrent.headers["retry-after"] == "1"
    assert completed.status_code == 201
    assert retry.status_code == 201
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.json()["id"] == completed.json()["id"]
    assert (await count_rows(db))["orders"] == 1


async def test_a_request_that_dies_mid_transaction_leaves_neither_order_nor_key(
    api: httpx.AsyncClient, client_key: str, make_product: MakeProduct, db: asyncpg.Pool
) -> None:
    product = await make_product()
    body = order_body((product.id, 1))

    # The order, its line and its job are written, the key waits for ours; then the connection
    # dies.
    async with key_row_held(db, client_key, "k"):
        first = asyncio.create_task(
            api.post("/v1/orders", json=body, headers=keyed(client_key, "k"))
        )
        pid = await api_backend_waiting_for_a_lock(db)
        await db.execute("SELECT pg_terminate_backend($1)", pid)
        lost = await first
    nothing = await count_rows(db)
    retry = await api.post("/v1/orders", json=body, headers=keyed(client_key, "k"))

    assert lost.status_code == 503
    assert lost.headers["retry-after"] == "1"
    assert nothing == {"orders": 0, "order_lines": 0, "outbox": 0}
    assert retry.status_code == 201
    assert "idempotent-replayed" not in retry.headers
    assert await count_rows(db) == {"orders": 1, "order_lines": 1, "outbox": 1}
    assert await db.fetchval("SELECT count(*) FROM idempotency_keys") == 1


async def test_a_failed_request_stores_nothing_so_its_key_can_be_used_again(
    api: httpx.AsyncClient, client_key: str, make_product: MakeProduct, db: asyncpg.Pool
) -> None:
    product = await make_product()

    unknown = await api.post(
        "/v1/orders", json=order_body((424242, 1)), headers=keyed(client_key, "k")
    )
    fixed = await api.post(
        "/v1/orders", json=order_body((product.id, 1)), headers=keyed(client_key, "k")
    )

    assert unknown.status_code == 422
    assert fixed.status_code == 201
    assert "idempotent-replayed" not in fixed.headers
    assert (await count_rows(db))["orders"] == 1


async def test_a_quoted_key_is_the_same_key_as_the_bare_one(
    api: httpx.AsyncClient, client_key: str, make_product: MakeProduct, db: asyncpg.Pool
) -> None:
    product = await make_product()
    body = order_body((product.id, 1))
    key = "8e03978e-40d5-43e8-bc93-6894a57f9324"

    # The IETF draft sends the key as a structured-field string; Stripe sends it bare.
    first = await api.post("/v1/orders", json=body, headers=keyed(client_key, f'"{key}"'))
    retry = await api.post("/v1/orders", json=body, headers=keyed(client_key, key))

    assert first.status_code == retry.status_code == 201
    assert retry.headers["idempotent-replayed"] == "true"
    assert await db.fetchval("SELECT key FROM idempotency_keys") == key


@pytest.mark.parametrize(
    "key",
    [b"", b'""', b"x" * 256, b"has space", b"tab\there", b"caf\xc3\xa9", b"\x7f"],
    ids=["empty", "empty quoted", "too long", "space", "tab", "non-ascii", "control"],
)
async def test_a_malformed_key_is_refused_and_nothing_is_written(
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    db: asyncpg.Pool,
    key: bytes,
) -> None:
    product = await make_product()

    response = await api.post(
        "/v1/orders",
        json=order_body((product.id, 1)),
        headers=[
            (b"authorization", f"Bearer {client_key}".encode()),
            (b"idempotency-key", key),
        ],
    )

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert await count_rows(db) == {"orders": 0, "order_lines": 0, "outbox": 0}
    assert await db.fetchval("SELECT count(*) FROM idempotency_keys") == 0


async def test_a_retried_cancellation_replays_and_returns_stock_once(
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    jobs: JobRunner,
    db: asyncpg.Pool,
) -> None:
    product = await make_product(stock=5)
    placed = await api.post(
        "/v1/orders", json=order_body((product.id, 2)), headers=bearer(client_key)
    )
    await jobs.run_until_idle()
    cancel = f"/v1/orders/{placed.json()['id']}/cancel"

    first = await api.post(cancel, headers=keyed(client_key, "cancel-1"))
    retry = await api.post(cancel, headers=keyed(client_key, "cancel-1"))
    unkeyed = await api.post(cancel, headers=bearer(client_key))

    assert first.status_code == 200
    assert first.json()["status"] == "cancelled"
    assert retry.status_code == 200
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.content == first.content
    assert unkeyed.status_code == 409
    assert await stock_of(db, product.id) == 5


async def test_the_documented_header(api: httpx.AsyncClient) -> None:
    document = (await api.get("/openapi.json")).json()

    for path in ("/v1/orders", "/v1/orders/{order_id}/cancel"):
        operation = document["paths"][path]["post"]
        parameters = {p["name"]: p for p in operation["parameters"]}
        assert parameters["Idempotency-Key"]["in"] == "header"
        assert parameters["Idempotency-Key"]["required"] is False
        assert "409" in operation["responses"]
        assert "422" in operation["responses"]
