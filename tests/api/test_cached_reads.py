"""Product reads answered from the in-process cache ahead of FastAPI (api/cached_reads.py).

The layer may only ever answer what the route would have answered, and must hand everything it
cannot decide in memory to the route.
"""

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import httpx
import pytest

from api.routes import products as products_routes
from kit.settings import Settings
from shop.catalogue import service as catalogue
from shop.catalogue.schemas import ProductPublic
from tests.app_fixtures import api_with, bearer

MakeProduct = Callable[..., Coroutine[Any, Any, ProductPublic]]
PER_REQUEST_HEADERS = {"x-process-time", "x-request-id"}


@pytest.fixture
def route_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The product ids the FastAPI route was asked for."""
    calls: list[int] = []
    original = catalogue.get_product_json

    async def counted(*args: Any) -> bytes:
        calls.append(args[-1])
        return await original(*args)

    monkeypatch.setattr(products_routes.catalogue, "get_product_json", counted)
    return calls


def _stable_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k not in PER_REQUEST_HEADERS}


async def test_a_cached_product_is_answered_without_the_route_and_exactly_as_it_would(
    api: httpx.AsyncClient, client_key: str, make_product: MakeProduct, route_calls: list[int]
) -> None:
    product = await make_product(name="Teapot", price_cents=2500, stock=3)

    by_route = await api.get(f"/v1/products/{product.id}", headers=bearer(client_key))
    by_cache = await api.get(f"/v1/products/{product.id}", headers=bearer(client_key))

    assert route_calls == [product.id]
    assert by_cache.status_code == by_route.status_code == 200
    assert by_cache.content == by_route.content
    assert _stable_headers(by_cache) == _stable_headers(by_route)
    assert by_cache.headers["x-request-id"] != by_route.headers["x-request-id"]
    assert float(by_cache.headers["x-process-time"]) >= 0


async def test_a_read_after_a_write_shows_the_write(
    api: httpx.AsyncClient, client_key: str, admin_key: str, make_product: MakeProduct
) -> None:
    product = await make_product(price_cents=100)
    await api.get(f"/v1/products/{product.id}", headers=bearer(client_key))
    await api.get(f"/v1/products/{product.id}", headers=bearer(client_key))

    patched = await api.patch(
        f"/v1/products/{product.id}", json={"price_cents": 200}, headers=bearer(admin_key)
    )
    read = await api.get(f"/v1/products/{product.id}", headers=bearer(client_key))

    assert patched.status_code == 200
    assert read.json()["price_cents"] == 200


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer ord_not-a-key", "Basic dXNlcjpwYXNz", "Bearer", "bearer    "],
)
async def test_a_request_without_a_known_key_is_left_to_the_route_and_refused(
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    route_calls: list[int],
    authorization: str | None,
) -> None:
    product = await make_product()
    await api.get(f"/v1/products/{product.id}", headers=bearer(client_key))  # cached now

    headers = {} if authorization is None else {"Authorization": authorization}
    response = await api.get(f"/v1/products/{product.id}", headers=headers)

    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"


async def test_the_bearer_scheme_is_matched_as_the_route_matches_it(
    api: httpx.AsyncClient, client_key: str, make_product: MakeProduct, route_calls: list[int]
) -> None:
    product = await make_product()
    await api.get(f"/v1/products/{product.id}", headers=bearer(client_key))

    lower = await api.get(
        f"/v1/products/{product.id}", headers={"Authorization": f"bearer {client_key}"}
    )

    assert lower.status_code == 200
    assert route_calls == [product.id]


async def test_other_requests_on_the_path_are_left_to_the_route(
    api: httpx.AsyncClient, client_key: str, make_product: MakeProduct, route_calls: list[int]
) -> None:
    product = await make_product()
    await api.get(f"/v1/products/{product.id}", headers=bearer(client_key))

    head = await api.head(f"/v1/products/{product.id}", headers=bearer(client_key))
    beyond_ids = await api.get("/v1/products/99999999999999999999", headers=bearer(client_key))
    trailing = await api.get(f"/v1/products/{product.id}/", headers=bearer(client_key))
    absent = await api.get(f"/v1/products/{product.id + 1000}", headers=bearer(client_key))

    assert head.status_code == 405
    assert beyond_ids.status_code == 422
    assert trailing.status_code in (307, 404)
    assert absent.status_code == 404
    assert route_calls == [product.id, product.id + 1000]


async def test_the_rate_limit_holds_for_cached_reads(
    limited_api: httpx.AsyncClient, client_key: str, make_product: MakeProduct
) -> None:
    product = await make_product()
    path = f"/v1/products/{product.id}"

    responses = [await limited_api.get(path, headers=bearer(client_key)) for _ in range(5)]

    # The first read fills the cache, the next two are answered from it, then the key is out.
    assert [r.status_code for r in responses] == [200, 200, 200, 429, 429]
    assert responses[3].headers["content-type"] == "application/problem+json"
    assert responses[3].headers["retry-after"] == "5"


async def _product_reads_timed(api: httpx.AsyncClient) -> float:
    metrics = (await api.get("/metrics")).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("orders_http_request_duration_seconds_count")
        and 'route="/v1/products/{product_id}"' in line
        and 'status="200"' in line
    )


async def test_cached_reads_are_timed_under_their_route(
    api: httpx.AsyncClient, client_key: str, make_product: MakeProduct, route_calls: list[int]
) -> None:
    product = await make_product()
    await api.get(f"/v1/products/{product.id}", headers=bearer(client_key))
    before = await _product_reads_timed(api)

    for _ in range(3):
        await api.get(f"/v1/products/{product.id}", headers=bearer(client_key))

    assert route_calls == [product.id]
    assert await _product_reads_timed(api) == before + 3


async def test_a_product_read_all_the_time_stays_cached_and_current(
    settings: Settings,
    client_key: str,
    admin_key: str,
    make_product: MakeProduct,
    route_calls: list[int],
) -> None:
    product = await make_product(price_cents=100)
    path = f"/v1/products/{product.id}"
    async with api_with(settings, catalogue_local_ttl_s=1.0) as api:
        # Filled once the new process has subscribed to invalidations (a read before that is
        # not kept locally).
        for _ in range(2):
            await api.get(path, headers=bearer(client_key))
            await asyncio.sleep(0.2)
        route_calls.clear()
        # Two and a half lifetimes of the entry, read every 50 ms: reloaded ahead, never missed
        # (it would take a pause of half a lifetime between two reads to let it expire).
        for _ in range(50):
            assert (await api.get(path, headers=bearer(client_key))).status_code == 200
            await asyncio.sleep(0.05)
        routed_while_read = list(route_calls)
        patched = await api.patch(path, json={"price_cents": 200}, headers=bearer(admin_key))
        read = await api.get(path, headers=bearer(client_key))

    assert routed_while_read == []
    assert patched.status_code == 200
    assert read.json()["price_cents"] == 200
