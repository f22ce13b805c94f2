"""POST/GET /v1/orders and cancellation, against real Postgres and Redis."""

from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg
import httpx
import pytest

from shop.catalogue.schemas import ProductPublic
from tests.app_fixtures import JobRunner, bearer, stock_of

MakeProduct = Callable[..., Coroutine[Any, Any, ProductPublic]]


def order_body(*lines: tuple[int, int], email: str = "ada@example.com") -> dict[str, Any]:
    return {
        "customer": {"email": email, "name": "Ada Lovelace"},
        "items": [
            {"product_id": product_id, "quantity": quantity} for product_id, quantity in lines
        ],
    }


async def count_rows(db: asyncpg.Pool) -> dict[str, int]:
    return {
        table: await db.fetchval(f"SELECT count(*) FROM {table}")
        for table in ("orders", "order_lines", "outbox")
    }


async def test_placing_an_order_prices_it_from_the_catalogue(
    api: httpx.AsyncClient, client_key: str, make_product: MakeProduct, db: asyncpg.Pool
) -> None:
    mug = await make_product(price_cents=1_250)
    tee = await make_product(price_cents=2_400)

    response = await api.post(
        "/v1/orders", json=order_body((tee.id, 1), (mug.id, 3)), headers=bearer(client_key)
    )

    assert response.status_code == 201
    order = response.json()
    assert response.headers["location"] == f"/v1/orders/{order['id']}"
    assert order["status"] == "pending"
    assert order["items"] == [
        {"product_id": tee.id, "quantity": 1, "unit_price_cents": 2_400},
        {"product_id": mug.id, "quantity": 3, "unit_price_cents": 1_250},
    ]
    assert order["total_cents"] == 2_400 + 3 * 1_250
    assert order["currency"] == "EUR"
    assert order["customer"] == {"email": "ada@example.com", "name": "Ada Lovelace"}
    assert order["created_at"].endswith("Z")
    for field in ("confirmed_at", "rejected_at", "cancelled_at", "rejection_reason"):
        assert order[field] is None
    assert await count_rows(db) == {"orders": 1, "order_lines": 2, "outbox": 1}
    job = await db.fetchrow("SELECT job_id, function, args FROM outbox")
    assert dict(job) == {
        "job_id": f"reserve_inventory:{order['id']}",
        "function": "reserve_inventory",
        "args": f"[{order['id']}]",
    }


async def test_responses_carry_timing_and_request_id_headers(
    api: httpx.AsyncClient, client_key: str
) -> None:
    response = await api.get(
        "/v1/orders", headers={**bearer(client_key), "X-Request-ID": "trace-123"}
    )

    assert response.status_code == 200
    assert float(response.headers["x-process-time"]) >= 0
    assert response.headers["x-request-id"] == "trace-123"


def _invalid_bodies(product_id: int) -> list[tuple[str, Any]]:
    valid_line = {"product_id": product_id, "quantity": 1}
    customer = {"email": "ada@example.com", "name": "Ada"}
    return [
        ("no items", {"customer": customer, "items": []}),
        ("too many lines", {"customer": customer, "items": [valid_line] * 51}),
        (
            "unknown product",
            {"customer": customer, "items": [{"product_id": 999_999, "quantity": 1}]},
        ),
        ("zero quantity", {"customer": customer, "items": [{**valid_line, "quantity": 0}]}),
        ("negative quantity", {"customer": customer, "items": [{**valid_line, "quantity": -2}]}),
        ("huge quantity", {"customer": customer, "items": [{**valid_line, "quantity": 10**6}]}),
        ("fractional quantity", {"customer": customer, "items": [{**valid_line, "quantity": 1.5}]}),
        ("quantity as string", {"customer": customer, "items": [{**valid_line, "quantity": "2"}]}),
        ("quantity as bool", {"customer": customer, "items": [{**valid_line, "quantity": True}]}),
        (
            "product id past bigint",
            {"customer": customer, "items": [{"product_id": 2**70, "quantity": 1}]},
        ),
        ("product twice", {"customer": customer, "items": [valid_line, valid_line]}),
        ("bad email", {"customer": {**customer, "email": "not-an-email"}, "items": [valid_line]}),
        ("blank name", {"customer": {**customer, "name": "   "}, "items": [valid_line]}),
        ("overlong name", {"customer": {**customer, "name": "x" * 201}, "items": [valid_line]}),
        ("no customer", {"items": [valid_line]}),
        (
            "client-set price",
            {"customer": customer, "items": [{**valid_line, "unit_price_cents": 1}]},
        ),
        ("unknown field", {"customer": customer, "items": [valid_line], "discount": 100}),
        ("not an object", [valid_line]),
    ]


@pytest.mark.parametrize("case", [name for name, _ in _invalid_bodies(product_id=1)])
async def test_invalid_orders_are_rejected_with_422_and_nothing_is_written(
    case: str,
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    db: asyncpg.Pool,
) -> None:
    product = await make_product()
    body = dict(_invalid_bodies(product.id))[case]

    response = await api.post("/v1/orders", json=body, headers=bearer(client_key))

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 422
    assert problem["title"]
    assert await count_rows(db) == {"orders": 0, "order_lines": 0, "outbox": 0}


async def test_unknown_products_are_named_in_the_problem(
    api: httpx.AsyncClient, client_key: str, make_product: MakeProduct
) -> None:
    product = await make_product()

    response = await api.post(
        "/v1/orders", json=order_body((product.id, 1), (424242, 1)), headers=bearer(client_key)
    )

    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"loc": ["body", "items", 1, "product_id"], "msg": "unknown product", "type": "unknown"}
    ]


async def test_an_order_mixing_currencies_is_rejected(
    api: httpx.AsyncClient, client_key: str, make_product: MakeProduct, db: asyncpg.Pool
) -> None:
    euro = await make_product(currency="EUR")
    dollar = await make_product(currency="USD")

    response = await api.post(
        "/v1/orders", json=order_body((euro.id, 1), (dollar.id, 1)), headers=bearer(client_key)
    )

    assert response.status_code == 422
    assert "one currency" in response.json()["detail"]
    assert (await count_rows(db))["orders"] == 0


async def test_malformed_json_is_a_400_problem(
    api: httpx.AsyncClient, client_key: str, db: asyncpg.Pool
) -> None:
    response = await api.post(
        "/v1/orders",
        content=b'{"customer": {',
        headers={**bearer(client_key), "content-type": "application/json"},
    )

    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["title"] == "Malformed JSON"
    assert (await count_rows(db))["orders"] == 0


# Like every other error: the one problem+json renderer, `instance` included.
TOO_LARGE = {
    "type": "about:blank",
    "title": "Content too large",
    "status": 413,
    "detail": "The request body is larger than 65536 bytes.",
    "instance": "/v1/orders",
}


async def test_an_oversized_body_is_refused_with_413(
    api: httpx.AsyncClient, client_key: str, db: asyncpg.Pool
) -> None:
    body = b'{"customer": {"email": "a@example.com", "name": "' + b"x" * 70_000 + b'"}}'

    response = await api.post(
        "/v1/orders",
        content=body,
        headers={**bearer(client_key), "content-type": "application/json"},
    )

    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == TOO_LARGE
    assert (await count_rows(db))["orders"] == 0


async def test_an_oversized_chunked_body_is_refused_with_413(
    api: httpx.AsyncClient, client_key: str
) -> None:
    async def chunks() -> Any:
        for _ in range(100):
            yield b"x" * 1_000

    response = await api.post(
        "/v1/orders",
        content=chunks(),
        headers={**bearer(client_key), "content-type": "application/json"},
    )

    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == TOO_LARGE


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer ord_unknown"}, {"Authorization": "Basic dXNlcjpwYXNz"}],
    ids=["no key", "unknown key", "not bearer"],
)
async def test_requests_without_a_valid_key_are_401(
    api: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await api.get("/v1/orders", headers=headers)

    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"] == "Bearer"


async def test_a_client_reads_its_order_with_its_transitions(
    api: httpx.AsyncClient, client_key: str, make_product: MakeProduct, jobs: JobRunner
) -> None:
    product = await make_product()
    placed = (
        await api.post("/v1/orders", json=order_body((product.id, 2)), headers=bearer(client_key))
    ).json()
    await jobs.run_until_idle()

    response = await api.get(f"/v1/orders/{placed['id']}", headers=bearer(client_key))

    assert response.status_code == 200
    order = response.json()
    assert order["status"] == "confirmed"
    assert order["confirmed_at"] >= order["created_at"]
    assert order["confirmation_sent_at"] >= order["confirmed_at"]
    assert order["items"] == placed["items"]


async def test_a_client_cannot_see_another_clients_order(
    api: httpx.AsyncClient,
    client_key: str,
    other_client_key: str,
    make_product: MakeProduct,
) -> None:
    product = await make_product()
    placed = (
        await api.post("/v1/orders", json=order_body((product.id, 1)), headers=bearer(client_key))
    ).json()

    read = await api.get(f"/v1/orders/{placed['id']}", headers=bearer(other_client_key))
    cancel = await api.post(f"/v1/orders/{placed['id']}/cancel", headers=bearer(other_client_key))
    listed = await api.get("/v1/orders", headers=bearer(other_client_key))

    assert read.status_code == 404
    assert read.headers["content-type"] == "application/problem+json"
    assert cancel.status_code == 404
    assert listed.json() == {"data": [], "next_cursor": None}


async def test_reading_a_missing_order_is_404(api: httpx.AsyncClient, client_key: str) -> None:
    response = await api.get("/v1/orders/123456", headers=bearer(client_key))

    assert response.status_code == 404
    assert response.json()["detail"] == "There is no order 123456."


async def test_listing_pages_newest_first_with_a_cursor(
    api: httpx.AsyncClient, client_key: str, make_product: MakeProduct
) -> None:
    product = await make_product(stock=100)
    placed = [
        (
            await api.post(
                "/v1/orders", json=order_body((product.id, 1)), headers=bearer(client_key)
            )
        ).json()["id"]
        for _ in range(5)
    ]

    first = (await api.get("/v1/orders?limit=2", headers=bearer(client_key))).json()
    second = (
        await api.get(
            f"/v1/orders?limit=2&cursor={first['next_cursor']}", headers=bearer(client_key)
        )
    ).json()
    third = (
        await api.get(
            f"/v1/orders?limit=2&cursor={second['next_cursor']}", headers=bearer(client_key)
        )
    ).json()

    seen = [order["id"] for page in (first, second, third) for order in page["data"]]
    assert seen == list(reversed(placed))
    assert third["next_cursor"] is None


async def test_listing_filters_by_status(
    api: httpx.AsyncClient, client_key: str, make_product: MakeProduct
) -> None:
    product = await make_product()
    keep = (
        await api.post("/v1/orders", json=order_body((product.id, 1)), headers=bearer(client_key))
    ).json()
    cancelled = (
        await api.post("/v1/orders", json=order_body((product.id, 1)), headers=bearer(client_key))
    ).json()
    await api.post(f"/v1/orders/{cancelled['id']}/cancel", headers=bearer(client_key))

    pending = (await api.get("/v1/orders?status=pending", headers=bearer(client_key))).json()
    gone = (await api.get("/v1/orders?status=cancelled", headers=bearer(client_key))).json()

    assert [order["id"] for order in pending["data"]] == [keep["id"]]
    assert [order["id"] for order in gone["data"]] == [cancelled["id"]]


@pytest.mark.parametrize(
    "query", ["status=shipped", "limit=0", "limit=101", "cursor=%%%", "cursor=bm90LWEtY3Vyc29y"]
)
async def test_bad_list_parameters_are_422(
    api: httpx.AsyncClient, client_key: str, query: str
) -> None:
    response = await api.get(f"/v1/orders?{query}", headers=bearer(client_key))

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


async def test_cancelling_a_pending_order(
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    jobs: JobRunner,
    db: asyncpg.Pool,
) -> None:
    product = await make_product(stock=5)
    placed = (
        await api.post("/v1/orders", json=order_body((product.id, 2)), headers=bearer(client_key))
    ).json()

    response = await api.post(f"/v1/orders/{placed['id']}/cancel", headers=bearer(client_key))
    await jobs.run_until_idle()

    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert response.json()["cancelled_at"] is not None
    # The reservation job found the order cancelled and left the stock alone.
    assert await stock_of(db, product.id) == 5
    assert await db.fetchval("SELECT status FROM orders WHERE id = $1", placed["id"]) == "cancelled"


async def test_cancelling_a_confirmed_order_returns_its_stock(
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    jobs: JobRunner,
    db: asyncpg.Pool,
) -> None:
    product = await make_product(stock=5)
    placed = (
        await api.post("/v1/orders", json=order_body((product.id, 2)), headers=bearer(client_key))
    ).json()
    await jobs.run_until_idle()
    assert await stock_of(db, product.id) == 3

    response = await api.post(f"/v1/orders/{placed['id']}/cancel", headers=bearer(client_key))

    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert await stock_of(db, product.id) == 5
    product_view = await api.get(f"/v1/products/{product.id}", headers=bearer(client_key))
    assert product_view.json()["stock"] == 5


async def test_cancelling_twice_or_a_rejected_order_is_409(
    api: httpx.AsyncClient, client_key: str, make_product: MakeProduct, jobs: JobRunner
) -> None:
    scarce = await make_product(stock=0)
    rejected = (
        await api.post("/v1/orders", json=order_body((scarce.id, 1)), headers=bearer(client_key))
    ).json()
    await jobs.run_until_idle()
    plenty = await make_product(stock=9)
    cancelled = (
        await api.post("/v1/orders", json=order_body((plenty.id, 1)), headers=bearer(client_key))
    ).json()
    await api.post(f"/v1/orders/{cancelled['id']}/cancel", headers=bearer(client_key))

    for order in (rejected, cancelled):
        response = await api.post(f"/v1/orders/{order['id']}/cancel", headers=bearer(client_key))
        assert response.status_code == 409
        assert response.headers["content-type"] == "application/problem+json"
