"""Order events: each written in the transaction of the change it reports, with the order as
GET /v1/orders/{id} answers it then; no change without its event, no event without its change."""

import asyncio
import json
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg
import httpx

from shop.catalogue.schemas import ProductPublic
from shop.webhooks.service import render_order
from tests.app_fixtures import JobRunner, bearer

MakeProduct = Callable[..., Coroutine[Any, Any, ProductPublic]]


async def events_of(db: asyncpg.Pool, order_id: int) -> list[dict[str, Any]]:
    rows = await db.fetch(
        "SELECT public_id, type, data, created_at FROM webhook_events"
        " WHERE order_id = $1 ORDER BY id",
        order_id,
    )
    # The test's pool has no jsonb codec (the application's does).
    return [{**row, "data": json.loads(row["data"])} for row in rows]


async def place(
    api: httpx.AsyncClient, key: str, product_id: int, quantity: int = 1, **headers: str
) -> httpx.Response:
    response = await api.post(
        "/v1/orders",
        json={
            "customer": {"email": "ada@example.com", "name": "Ada"},
            "items": [{"product_id": product_id, "quantity": quantity}],
        },
        headers={**bearer(key), **headers},
    )
    assert response.status_code == 201, response.text
    return response


async def test_placing_an_order_writes_order_created_with_the_order_as_answered(
    api: httpx.AsyncClient, client_key: str, make_product: MakeProduct, db: asyncpg.Pool
) -> None:
    product = await make_product(stock=5)
    other = await make_product(stock=5)
    response = await api.post(
        "/v1/orders",
        json={
            "customer": {"email": "Ada@Example.COM", "name": "Ada"},
            "items": [
                {"product_id": other.id, "quantity": 2},
                {"product_id": product.id, "quantity": 1},
            ],
        },
        headers=bearer(client_key),
    )
    order = response.json()

    events = await events_of(db, order["id"])

    assert [event["type"] for event in events] == ["order.created"]
    assert events[0]["public_id"].startswith("evt_")
    assert render_order(events[0]["data"]) == order
    got = await api.get(f"/v1/orders/{order['id']}", headers=bearer(client_key))
    assert render_order(events[0]["data"]) == got.json()


async def test_an_order_placed_under_an_idempotency_key_writes_one_event(
    api: httpx.AsyncClient, client_key: str, make_product: MakeProduct, db: asyncpg.Pool
) -> None:
    product = await make_product(stock=5)
    first = await place(api, client_key, product.id, **{"Idempotency-Key": "k-1"})
    again = await place(api, client_key, product.id, **{"Idempotency-Key": "k-1"})
    assert again.headers["Idempotent-Replayed"] == "true"

    events = await events_of(db, first.json()["id"])

    assert [event["type"] for event in events] == ["order.created"]
    assert render_order(events[0]["data"]) == first.json()


async def test_an_order_refused_writes_no_event(
    api: httpx.AsyncClient, client_key: str, db: asyncpg.Pool
) -> None:
    response = await api.post(
        "/v1/orders",
        json={
            "customer": {"email": "ada@example.com", "name": "Ada"},
            "items": [{"product_id": 999_999, "quantity": 1}],
        },
        headers=bearer(client_key),
    )
    assert response.status_code == 422
    assert await db.fetchval("SELECT count(*) FROM webhook_events") == 0


async def test_a_reservation_writes_order_confirmed_with_the_confirmed_order(
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    db: asyncpg.Pool,
    jobs: JobRunner,
) -> None:
    product = await make_product(stock=5)
    order_id = (await place(api, client_key, product.id)).json()["id"]

    await jobs.run_until_idle()

    events = await events_of(db, order_id)
    assert [event["type"] for event in events] == ["order.created", "order.confirmed"]
    confirmed = render_order(events[1]["data"])
    assert confirmed["status"] == "confirmed"
    assert confirmed["confirmed_at"] is not None
    # The confirmation email went out after the event: the order as it was when confirmed.
    now = (await api.get(f"/v1/orders/{order_id}", headers=bearer(client_key))).json()
    assert confirmed == {**now, "confirmation_sent_at": None}


async def test_a_reservation_short_of_stock_writes_order_rejected(
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    db: asyncpg.Pool,
    jobs: JobRunner,
) -> None:
    product = await make_product(stock=1)
    order_id = (await place(api, client_key, product.id, quantity=2)).json()["id"]

    await jobs.run_until_idle()

    events = await events_of(db, order_id)
    assert [event["type"] for event in events] == ["order.created", "order.rejected"]
    now = (await api.get(f"/v1/orders/{order_id}", headers=bearer(client_key))).json()
    assert now["status"] == "rejected"
    assert render_order(events[1]["data"]) == now


async def test_a_reservation_run_again_writes_no_second_event(
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    db: asyncpg.Pool,
    jobs: JobRunner,
) -> None:
    product = await make_product(stock=5)
    order_id = (await place(api, client_key, product.id)).json()["id"]
    await jobs.run_until_idle()

    await db.execute("UPDATE outbox SET delivered_at = NULL WHERE order_id = $1", order_id)
    await jobs.run_until_idle()

    types = [event["type"] for event in await events_of(db, order_id)]
    assert types == ["order.created", "order.confirmed"]


async def test_cancelling_writes_order_cancelled_and_a_refused_cancel_writes_nothing(
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    db: asyncpg.Pool,
) -> None:
    product = await make_product(stock=5)
    order_id = (await place(api, client_key, product.id)).json()["id"]
    path = f"/v1/orders/{order_id}/cancel"

    cancelled = await api.post(path, headers=bearer(client_key))
    refused = await api.post(path, headers=bearer(client_key))

    assert cancelled.status_code == 200
    assert refused.status_code == 409
    events = await events_of(db, order_id)
    assert [event["type"] for event in events] == ["order.created", "order.cancelled"]
    assert render_order(events[1]["data"]) == cancelled.json()


async def test_a_cancel_that_rolls_back_leaves_no_event(
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    db: asyncpg.Pool,
) -> None:
    product = await make_product(stock=5)
    order_id = (await place(api, client_key, product.id)).json()["id"]
    # The event's insert fails, inside the cancel's transaction: the cancel must not commit.
    await db.execute(
        "ALTER TABLE webhook_events ADD CONSTRAINT ck_test_no_cancel"
        " CHECK (type <> 'order.cancelled') NOT VALID"
    )
    try:
        response = await api.post(f"/v1/orders/{order_id}/cancel", headers=bearer(client_key))
    finally:
        await db.execute("ALTER TABLE webhook_events DROP CONSTRAINT ck_test_no_cancel")

    assert response.status_code == 500
    order = await api.get(f"/v1/orders/{order_id}", headers=bearer(client_key))
    assert order.json()["status"] == "pending"
    assert [event["type"] for event in await events_of(db, order_id)] == ["order.created"]


async def test_keyed_orders_written_together_each_get_their_own_order_created(
    api: httpx.AsyncClient, client_key: str, make_product: MakeProduct, db: asyncpg.Pool
) -> None:
    product = await make_product(stock=50)
    # Placed at once, they share the group commit's statements (shop.orders.group_commit).
    responses = await asyncio.gather(
        *(place(api, client_key, product.id, **{"Idempotency-Key": f"k-{n}"}) for n in range(8))
    )

    for response in responses:
        events = await events_of(db, response.json()["id"])
        assert [event["type"] for event in events] == ["order.created"]
        assert render_order(events[0]["data"]) == response.json()
