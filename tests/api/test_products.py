"""The catalogue: reads through the Redis cache, admin writes, invalidation."""

from collections.abc import Callable, Coroutine
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from kit.settings import Settings
from shop.catalogue.schemas import ProductPublic
from tests.app_fixtures import JobRunner, bearer, wait_for

MakeProduct = Callable[..., Coroutine[Any, Any, ProductPublic]]


@pytest.fixture
async def redis(settings: Settings) -> Any:
    client = Redis.from_url(settings.redis_url.get_secret_value())
    yield client
    await client.aclose()


async def test_a_product_is_served_from_the_cache_after_the_first_read(
    api: httpx.AsyncClient, client_key: str, make_product: MakeProduct, redis: Redis
) -> None:
    product = await make_product(price_cents=990, stock=7, name="Mug")

    first = await api.get(f"/v1/products/{product.id}", headers=bearer(client_key))
    cached = await redis.get(f"catalogue:product:{product.id}")
    second = await api.get(f"/v1/products/{product.id}", headers=bearer(client_key))

    expected = {
        "id": product.id,
        "sku": product.sku,
        "name": "Mug",
        "price_cents": 990,
        "currency": "EUR",
        "stock": 7,
    }
    assert first.status_code == 200
    assert first.headers["content-type"] == "application/json"
    assert first.json() == expected
    assert cached is not None
    assert cached.endswith(first.content)
    assert second.json() == expected


async def test_an_admin_write_is_visible_to_the_very_next_read(
    api: httpx.AsyncClient, client_key: str, admin_key: str, make_product: MakeProduct
) -> None:
    product = await make_product(price_cents=1_000)
    await api.get(f"/v1/products/{product.id}", headers=bearer(client_key))
    await api.get("/v1/products", headers=bearer(client_key))

    patched = await api.patch(
        f"/v1/products/{product.id}",
        json={"price_cents": 1_500, "name": "Renamed"},
        headers=bearer(admin_key),
    )
    read = await api.get(f"/v1/products/{product.id}", headers=bearer(client_key))
    listed = await api.get("/v1/products", headers=bearer(client_key))

    assert patched.status_code == 200
    assert patched.json()["price_cents"] == 1_500
    assert read.json()["price_cents"] == 1_500
    assert read.json()["name"] == "Renamed"
    assert listed.json()["data"][0]["price_cents"] == 1_500


async def test_stock_taken_by_an_order_shows_through_the_cache_within_the_local_ttl(
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    jobs: JobRunner,
    settings: Settings,
) -> None:
    product = await make_product(stock=10)
    assert (await api.get(f"/v1/products/{product.id}", headers=bearer(client_key))).json()[
        "stock"
    ] == 10

    await api.post(
        "/v1/orders",
        json={
            "customer": {"email": "ada@example.com", "name": "Ada"},
            "items": [{"product_id": product.id, "quantity": 4}],
        },
        headers=bearer(client_key),
    )
    await jobs.run_until_idle()

    async def shows_stock_taken() -> bool:
        read = await api.get(f"/v1/products/{product.id}", headers=bearer(client_key))
        return bool(read.json()["stock"] == 6)

    # The bound the catalogue promises for stock moved by orders (ProductCache.stock_taken),
    # with a little room for a loaded machine.
    await wait_for(shows_stock_taken, timeout_s=settings.catalogue_local_ttl_s + 0.5)


async def test_a_creation_is_visible_in_the_cached_list(
    api: httpx.AsyncClient, client_key: str, admin_key: str, make_product: MakeProduct
) -> None:
    await make_product()
    before = await api.get("/v1/products", headers=bearer(client_key))

    created = await api.post(
        "/v1/products",
        json={"sku": "NEW-1", "name": "New", "price_cents": 500, "stock": 3},
        headers=bearer(admin_key),
    )
    after = await api.get("/v1/products", headers=bearer(client_key))

    assert created.status_code == 201
    assert created.headers["location"] == f"/v1/products/{created.json()['id']}"
    assert len(before.json()["data"]) == 1
    assert [p["sku"] for p in after.json()["data"]] == [before.json()["data"][0]["sku"], "NEW-1"]


async def test_the_catalogue_pages_with_a_cursor(
    api: httpx.AsyncClient, client_key: str, make_product: MakeProduct
) -> None:
    made = [await make_product() for _ in range(3)]

    first = (await api.get("/v1/products?limit=2", headers=bearer(client_key))).json()
    second = (
        await api.get(
            f"/v1/products?limit=2&cursor={first['next_cursor']}", headers=bearer(client_key)
        )
    ).json()

    assert [p["id"] for p in first["data"] + second["data"]] == [p.id for p in made]
    assert second["next_cursor"] is None


async def test_catalogue_writes_need_an_admin_key(
    api: httpx.AsyncClient, client_key: str, make_product: MakeProduct
) -> None:
    product = await make_product()

    create = await api.post(
        "/v1/products",
        json={"sku": "X-1", "name": "X", "price_cents": 1},
        headers=bearer(client_key),
    )
    patch = await api.patch(
        f"/v1/products/{product.id}", json={"stock": 0}, headers=bearer(client_key)
    )

    assert create.status_code == 403
    assert patch.status_code == 403
    assert create.headers["content-type"] == "application/problem+json"


async def test_a_duplicate_sku_is_409(
    api: httpx.AsyncClient, admin_key: str, make_product: MakeProduct
) -> None:
    product = await make_product()

    response = await api.post(
        "/v1/products",
        json={"sku": product.sku, "name": "Again", "price_cents": 1},
        headers=bearer(admin_key),
    )

    assert response.status_code == 409


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"price_cents": -1},
        {"stock": -1},
        {"name": ""},
        {"stock": None},
        {"sku": "NEW"},
        {"price_cents": "10"},
    ],
    ids=[
        "empty",
        "negative price",
        "negative stock",
        "blank name",
        "null stock",
        "sku",
        "price as string",
    ],
)
async def test_invalid_product_updates_are_422_and_change_nothing(
    api: httpx.AsyncClient, admin_key: str, make_product: MakeProduct, body: dict[str, Any]
) -> None:
    product = await make_product(price_cents=100, stock=1)

    response = await api.patch(f"/v1/products/{product.id}", json=body, headers=bearer(admin_key))
    after = await api.get(f"/v1/products/{product.id}", headers=bearer(admin_key))

    assert response.status_code == 422
    assert after.json()["price_cents"] == 100
    assert after.json()["stock"] == 1


async def test_missing_products_are_404(api: httpx.AsyncClient, admin_key: str) -> None:
    read = await api.get("/v1/products/987654", headers=bearer(admin_key))
    patch = await api.patch("/v1/products/987654", json={"stock": 1}, headers=bearer(admin_key))

    assert read.status_code == 404
    assert patch.status_code == 404


async def test_reads_fall_back_to_postgres_while_redis_is_down(
    api: httpx.AsyncClient,
    client_key: str,
    admin_key: str,
    make_product: MakeProduct,
    redis_service: Any,
) -> None:
    product = await make_product(price_cents=700)
    redis_service.stop()
    try:
        read = await api.get(f"/v1/products/{product.id}", headers=bearer(client_key))
        patched = await api.patch(
            f"/v1/products/{product.id}", json={"price_cents": 800}, headers=bearer(admin_key)
        )
        reread = await api.get(f"/v1/products/{product.id}", headers=bearer(client_key))
    finally:
        redis_service.start()

    assert read.status_code == 200
    assert read.json()["price_cents"] == 700
    assert patched.status_code == 200
    assert reread.json()["price_cents"] == 800
