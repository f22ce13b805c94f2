"""The race an Idempotency-Key's lock cannot see: a request with the same key that commits
between the two statements of another. The key's primary key decides, and the loser replays."""

from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg
import pytest

from kit.settings import Settings
from shop.catalogue.schemas import ProductPublic
from shop.clients.auth import Client
from shop.orders import repository as orders_repo
from shop.orders import service as orders
from shop.orders.group_commit import OrderGroupCommit
from shop.orders.schemas import OrderCreate

MakeProduct = Callable[..., Coroutine[Any, Any, ProductPublic]]


async def test_a_request_that_lost_the_race_for_its_key_replays_the_winner(
    settings: Settings,
    client_key: str,
    make_product: MakeProduct,
    db: asyncpg.Pool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    product = await make_product()
    row = await db.fetchrow("SELECT id, name FROM clients")
    client = Client(id=row["id"], name=row["name"], is_admin=False)
    order = OrderCreate.model_validate(
        {
            "customer": {"email": "ada@example.com", "name": "Ada"},
            "items": [{"product_id": product.id, "quantity": 1}],
        }
    )
    writes = OrderGroupCommit(db, settings)
    write = orders_repo.insert_keyed_with_reservation_jobs
    winner: list[Any] = []

    async def another_request_commits_first(*args: Any, **kwargs: Any) -> set[int]:
        if not winner:
            # This request has read that the key is free; before it writes, another request
            # with the same key places the order and stores its response.
            winner.append(None)
            winner[0] = await orders.place_order_once(
                db, settings, writes, client, order, None, "k"
            )
        return await write(*args, **kwargs)

    monkeypatch.setattr(
        orders_repo, "insert_keyed_with_reservation_jobs", another_request_commits_first
    )

    loser = await orders.place_order_once(db, settings, writes, client, order, None, "k")

    assert not winner[0].replayed
    assert loser.replayed
    assert loser.body == winner[0].body
    assert await db.fetchval("SELECT count(*) FROM orders") == 1
    assert await db.fetchval("SELECT count(*) FROM idempotency_keys") == 1
