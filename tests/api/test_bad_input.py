"""Hostile and unusual input: a clear 4xx problem+json and nothing written, or stored exactly."""

import json
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg
import httpx
import pytest

from shop.catalogue.schemas import ProductPublic
from tests.api.test_orders import count_rows, order_body
from tests.app_fixtures import bearer

MakeProduct = Callable[..., Coroutine[Any, Any, ProductPublic]]

NOTHING = {"orders": 0, "order_lines": 0, "outbox": 0}


def raw(api_key: str) -> dict[str, str]:
    return {**bearer(api_key), "content-type": "application/json"}


@pytest.mark.parametrize(
    "name",
    [
        "Zoë Ærøskøbing 👩🏽‍💻",
        "مريم الأحمد",
        "שרה כהן",
        "Åsa with combining ring: A\u030asa",
        "\u202eright-to-left override\u202c",
        "zero\u200bwidth",
        "𝕳𝖎𝖌𝖍 𝖕𝖑𝖆𝖓𝖊",
    ],
    ids=["emoji", "arabic", "hebrew", "combining", "bidi override", "zero width", "astral"],
)
async def test_unicode_names_are_stored_and_returned_exactly(
    name: str, api: httpx.AsyncClient, client_key: str, make_product: MakeProduct
) -> None:
    product = await make_product()
    body = order_body((product.id, 1))
    body["customer"]["name"] = name

    placed = await api.post("/v1/orders", json=body, headers=bearer(client_key))
    read = await api.get(placed.headers["location"], headers=bearer(client_key))

    assert placed.status_code == 201
    assert placed.json()["customer"]["name"] == name
    assert read.json()["customer"]["name"] == name


def _order_json(product_id: int, name: str = '"Ada"', quantity: str = "1") -> str:
    """An order as JSON text, with the name and quantity spliced in as raw JSON."""
    return (
        f'{{"customer": {{"email": "ada@example.com", "name": {name}}},'
        f' "items": [{{"product_id": {product_id}, "quantity": {quantity}}}]}}'
    )


BAD_BODIES: dict[str, Callable[[int], bytes]] = {
    # Postgres text cannot hold NUL; it must be refused before it reaches the driver.
    "NUL in the name": lambda pid: _order_json(pid, name='"Ada\\u0000"').encode(),
    "NUL in the email": lambda pid: _order_json(pid).replace("ada@", "a\\u0000da@").encode(),
    "lone high surrogate": lambda pid: _order_json(pid, name='"Ada \\ud800"').encode(),
    "lone low surrogate": lambda pid: _order_json(pid, name='"\\udfff"').encode(),
    "invalid UTF-8": lambda pid: _order_json(pid, name='"Ada \xff"').encode("latin-1"),
    "quantity as a float": lambda pid: _order_json(pid, quantity="1.0").encode(),
    "quantity in exponent form": lambda pid: _order_json(pid, quantity="1e2").encode(),
    "quantity overflowing a double": lambda pid: _order_json(pid, quantity="1e400").encode(),
    "quantity NaN": lambda pid: _order_json(pid, quantity="NaN").encode(),
    "quantity Infinity": lambda pid: _order_json(pid, quantity="-Infinity").encode(),
    "quantity past 64 bits": lambda pid: _order_json(pid, quantity=str(2**64)).encode(),
    "quantity with 5000 digits": lambda pid: _order_json(pid, quantity="9" * 5000).encode(),
    "product id with 5000 digits": lambda pid: _order_json(int("9" * 50)).encode(),
    "quantity null": lambda pid: _order_json(pid, quantity="null").encode(),
    "name as an object": lambda pid: _order_json(pid, name='{"first": "Ada"}').encode(),
    "deeply nested": lambda pid: b"[" * 20_000 + b"]" * 20_000,
    "empty body": lambda pid: b"",
    "JSON null": lambda pid: b"null",
    "a bare string": lambda pid: b'"order"',
    "trailing garbage": lambda pid: _order_json(pid).encode() + b"}",
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
async def test_bad_bodies_are_a_4xx_problem_and_nothing_is_written(
    case: str,
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    db: asyncpg.Pool,
) -> None:
    product = await make_product()

    response = await api.post(
        "/v1/orders", content=BAD_BODIES[case](product.id), headers=raw(client_key)
    )

    assert response.status_code in (400, 422), response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == response.status_code
    assert await count_rows(db) == NOTHING


async def test_a_body_sent_as_text_is_not_taken_for_json(
    api: httpx.AsyncClient, client_key: str, make_product: MakeProduct, db: asyncpg.Pool
) -> None:
    product = await make_product()

    response = await api.post(
        "/v1/orders",
        content=json.dumps(order_body((product.id, 1))),
        headers={**bearer(client_key), "content-type": "text/plain"},
    )

    assert 400 <= response.status_code < 500
    assert response.headers["content-type"] == "application/problem+json"
    assert await count_rows(db) == NOTHING


async def test_a_nul_in_a_product_name_is_422(
    api: httpx.AsyncClient, admin_key: str, db: asyncpg.Pool
) -> None:
    response = await api.post(
        "/v1/products",
        json={"sku": "NUL-1", "name": "Mug\u0000", "price_cents": 100},
        headers=bearer(admin_key),
    )

    assert response.status_code == 422
    assert await db.fetchval("SELECT count(*) FROM products") == 0


async def test_validation_problems_do_not_echo_the_input(
    api: httpx.AsyncClient, client_key: str, make_product: MakeProduct
) -> None:
    product = await make_product()
    secret = "do-not-echo-" + "x" * 50
    body = order_body((product.id, 1))
    body["customer"]["email"] = secret

    response = await api.post("/v1/orders", json=body, headers=bearer(client_key))

    assert response.status_code == 422
    assert secret not in response.text
