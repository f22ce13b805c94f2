"""Properties of request validation, with Hypothesis: whatever a client sends to POST /v1/orders,
the answer is 201 or a 4xx problem+json, never a 5xx, and a 4xx wrote nothing."""

import json
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg
import httpx
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from shop.catalogue.schemas import ProductPublic
from tests.api.test_orders import count_rows
from tests.app_fixtures import bearer

MakeProduct = Callable[..., Coroutine[Any, Any, ProductPublic]]

# Bounded and derandomised: the same examples on every run, a few seconds in all.
PROPERTY_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

any_text = st.text(max_size=40) | st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=()), max_size=20
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | any_text
)
any_json = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
# Products 1 to 3 exist (each test starts from an empty, renumbered database); others do not.
PRODUCTS = 3
product_ids = st.integers(min_value=1, max_value=PRODUCTS) | st.integers() | any_json
quantities = st.integers(min_value=1, max_value=3) | st.integers() | any_json
lines = st.fixed_dictionaries({"product_id": product_ids, "quantity": quantities}) | any_json
customers = (
    st.fixed_dictionaries(
        {
            "email": st.emails() | any_text | any_json,
            "name": st.just("Ada") | any_text | any_json,
        }
    )
    | any_json
)
# Valid but for what the catalogue and Postgres decide: any text as the name (emoji, RTL,
# combining marks, NUL, lone surrogates), any email shape Hypothesis knows.
valid_orders = st.fixed_dictionaries(
    {
        "customer": st.fixed_dictionaries(
            {"email": st.emails(), "name": st.text(min_size=1, max_size=40)}
        ),
        "items": st.lists(
            st.fixed_dictionaries(
                {
                    "product_id": st.integers(min_value=1, max_value=PRODUCTS),
                    "quantity": st.integers(min_value=1, max_value=1_000),
                }
            ),
            min_size=1,
            max_size=PRODUCTS,
            unique_by=lambda line: line["product_id"],
        ),
    }
)
# Valid, nearly valid (validation explored past the first error), and anything at all.
order_like = (
    valid_orders
    | st.fixed_dictionaries(
        {"customer": customers, "items": st.lists(lines, min_size=0, max_size=3) | any_json},
        optional={"extra": any_json},
    )
    | any_json
)


async def ensure_products(db: asyncpg.Pool, make_product: MakeProduct) -> None:
    while await db.fetchval("SELECT count(*) FROM products") < PRODUCTS:
        await make_product(stock=1_000_000)


async def place_and_check(
    api: httpx.AsyncClient, db: asyncpg.Pool, headers: dict[str, str], content: bytes
) -> int:
    before = await count_rows(db)
    response = await api.post(
        "/v1/orders", content=content, headers={**headers, "content-type": "application/json"}
    )
    after = await count_rows(db)
    event(f"status {response.status_code}")

    assert response.status_code == 201 or 400 <= response.status_code < 500, response.text
    if response.status_code == 201:
        assert after["orders"] == before["orders"] + 1
    else:
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["status"] == response.status_code
        assert after == before
    return response.status_code


@PROPERTY_SETTINGS
@given(body=order_like)
async def test_any_json_body_is_201_or_a_4xx_problem_that_wrote_nothing(
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    db: asyncpg.Pool,
    body: Any,
) -> None:
    await ensure_products(db, make_product)
    content = json.dumps(body, allow_nan=True).encode("utf-8", "surrogatepass")
    await place_and_check(api, db, bearer(client_key), content)


@PROPERTY_SETTINGS
@given(content=st.binary(max_size=300))
async def test_any_bytes_are_201_or_a_4xx_problem_that_wrote_nothing(
    api: httpx.AsyncClient, client_key: str, db: asyncpg.Pool, content: bytes
) -> None:
    await place_and_check(api, db, bearer(client_key), content)


@PROPERTY_SETTINGS
@given(key=st.binary(min_size=0, max_size=300).filter(lambda k: b"\r" not in k and b"\n" not in k))
async def test_any_idempotency_key_is_201_or_a_4xx_problem(
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    db: asyncpg.Pool,
    key: bytes,
) -> None:
    await ensure_products(db, make_product)
    body = b'{"customer": {"email": "ada@example.com", "name": "Ada"},'
    body += b' "items": [{"product_id": 1, "quantity": 1}]}'

    response = await api.post(
        "/v1/orders",
        content=body,
        headers=[
            (b"authorization", f"Bearer {client_key}".encode()),
            (b"content-type", b"application/json"),
            (b"idempotency-key", key),
        ],
    )

    event(f"status {response.status_code}")
    assert response.status_code in (201, 422), response.text
    if response.status_code == 422:
        assert response.headers["content-type"] == "application/problem+json"
