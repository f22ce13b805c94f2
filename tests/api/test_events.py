"""GET /v1/events: a client's own events, oldest first after a cursor, kept EVENT_RETENTION_S."""

from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg
import httpx

from kit.settings import Settings
from shop.catalogue.schemas import ProductPublic
from shop.webhooks.service import purge_events
from tests.app_fixtures import JobRunner, bearer

MakeProduct = Callable[..., Coroutine[Any, Any, ProductPublic]]


async def place(api: httpx.AsyncClient, key: str, product_id: int) -> int:
    response = await api.post(
        "/v1/orders",
        json={
            "customer": {"email": "ada@example.com", "name": "Ada"},
            "items": [{"product_id": product_id, "quantity": 1}],
        },
        headers=bearer(key),
    )
    assert response.status_code == 201, response.text
    order_id: int = response.json()["id"]
    return order_id


async def events(api: httpx.AsyncClient, key: str, **params: Any) -> dict[str, Any]:
    response = await api.get("/v1/events", params=params, headers=bearer(key))
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


async def test_a_client_reads_its_own_events_oldest_first_a_page_at_a_time(
    api: httpx.AsyncClient,
    client_key: str,
    other_client_key: str,
    make_product: MakeProduct,
    jobs: JobRunner,
) -> None:
    product = await make_product(stock=10)
    first = await place(api, client_key, product.id)
    await place(api, other_client_key, product.id)
    second = await place(api, client_key, product.id)
    await jobs.run_until_idle()

    page = await events(api, client_key, limit=3)
    rest = await events(api, client_key, limit=3, after=page["data"][-1]["id"])

    seen = [(event["type"], event["data"]["id"]) for event in page["data"] + rest["data"]]
    assert sorted(seen[:2]) == [("order.created", first), ("order.created", second)]
    assert sorted(seen[2:]) == [("order.confirmed", first), ("order.confirmed", second)]
    assert page["has_more"] is True
    assert rest["has_more"] is False
    order = (await api.get(f"/v1/orders/{first}", headers=bearer(client_key))).json()
    created = next(e for e in page["data"] if e["data"]["id"] == first)
    assert created["data"] == {
        **order,
        "status": "pending",
        "confirmed_at": None,
        "confirmation_sent_at": None,
    }


async def test_events_can_be_filtered_by_type(
    api: httpx.AsyncClient, client_key: str, make_product: MakeProduct, jobs: JobRunner
) -> None:
    product = await make_product(stock=10)
    order_id = await place(api, client_key, product.id)
    await jobs.run_until_idle()

    page = await events(api, client_key, type="order.confirmed")

    assert [(e["type"], e["data"]["id"]) for e in page["data"]] == [("order.confirmed", order_id)]


async def test_a_cursor_that_is_not_an_event_of_yours_is_refused(
    api: httpx.AsyncClient, client_key: str, other_client_key: str, make_product: MakeProduct
) -> None:
    product = await make_product(stock=10)
    await place(api, other_client_key, product.id)
    theirs = (await events(api, other_client_key))["data"][0]["id"]

    for after in (theirs, "evt_" + "0" * 32, "not-an-event"):
        response = await api.get("/v1/events", params={"after": after}, headers=bearer(client_key))
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"


async def test_events_older_than_the_retention_are_purged(
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    db: asyncpg.Pool,
    settings: Settings,
) -> None:
    product = await make_product(stock=10)
    old = await place(api, client_key, product.id)
    new = await place(api, client_key, product.id)
    await db.execute(
        "UPDATE webhook_events SET created_at = now() - make_interval(secs => $1 + 60)"
        " WHERE order_id = $2",
        float(settings.event_retention_s),
        old,
    )

    purged = await purge_events(db, settings, budget_s=5)

    assert purged == 1
    assert [e["data"]["id"] for e in (await events(api, client_key))["data"]] == [new]
