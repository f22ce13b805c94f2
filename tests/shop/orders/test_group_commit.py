"""Keyed orders placed at the same time share one statement and one commit, each written once."""

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import asyncpg
import pytest

from kit.settings import Settings
from shop.catalogue.schemas import ProductPublic
from shop.clients.auth import Client
from shop.orders import repository as orders_repo
from shop.orders import service as orders
from shop.orders.group_commit import OrderGroupCommit
from shop.orders.repository import KeyedOrder
from shop.orders.schemas import OrderCreate
from tests.app_fixtures import wait_for

MakeProduct = Callable[..., Coroutine[Any, Any, ProductPublic]]


async def a_client(db: asyncpg.Pool) -> Client:
    row = await db.fetchrow("SELECT id, name FROM clients")
    return Client(id=row["id"], name=row["name"], is_admin=False)


def an_order(product: ProductPublic, email: str = "ada@example.com") -> OrderCreate:
    return OrderCreate.model_validate(
        {
            "customer": {"email": email, "name": "Ada"},
            "items": [{"product_id": product.id, "quantity": 1}],
        }
    )


def record_statements(monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """The order ids each write statement carried, in the order the statements ran."""
    statements: list[list[int]] = []
    write = orders_repo.insert_keyed_with_reservation_jobs

    async def recorded(conn: asyncpg.Connection, batch: Sequence[KeyedOrder]) -> set[int]:
        statements.append([order.plan.order_id for order in batch])
        return await write(conn, batch)

    monkeypatch.setattr(orders_repo, "insert_keyed_with_reservation_jobs", recorded)
    return statements


async def test_orders_placed_together_share_statements_and_each_is_written_once(
    settings: Settings,
    client_key: str,
    make_product: MakeProduct,
    db: asyncpg.Pool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    product = await make_product(stock=100)
    client = await a_client(db)
    writes = OrderGroupCommit(db, settings)
    statements = record_statements(monkeypatch)

    placed = await asyncio.gather(
        *(
            orders.place_order_once(
                db, settings, writes, client, an_order(product, f"c{n}@example.com"), None, f"k{n}"
            )
            for n in range(30)
        )
    )

    assert all(response.status == 201 and not response.replayed for response in placed)
    assert len(statements) < 30
    assert sorted(order_id for statement in statements for order_id in statement) == sorted(
        {order_id for statement in statements for order_id in statement}
    )
    counts = await db.fetchrow(
        "SELECT (SELECT count(*) FROM orders) AS orders, (SELECT count(*) FROM outbox) AS jobs,"
        " (SELECT count(*) FROM order_lines) AS lines,"
        " (SELECT count(*) FROM idempotency_keys) AS keys"
    )
    assert dict(counts) == {"orders": 30, "jobs": 30, "lines": 30, "keys": 30}


async def test_one_key_twice_in_a_statement_places_one_order_and_the_other_request_replays_it(
    settings: Settings,
    client_key: str,
    make_product: MakeProduct,
    db: asyncpg.Pool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    product = await make_product(stock=100)
    client = await a_client(db)
    writes = OrderGroupCommit(db, settings, concurrency=1)
    statements = record_statements(monkeypatch)
    recorded = orders_repo.insert_keyed_with_reservation_jobs
    running, released = asyncio.Event(), asyncio.Event()

    async def first_statement_waits(conn: asyncpg.Connection, batch: Sequence[KeyedOrder]) -> Any:
        if not running.is_set():
            running.set()
            await released.wait()
        return await recorded(conn, batch)

    monkeypatch.setattr(orders_repo, "insert_keyed_with_reservation_jobs", first_statement_waits)

    def place(key: str) -> "asyncio.Task[orders.StoredResponse]":
        return asyncio.create_task(
            orders.place_order_once(db, settings, writes, client, an_order(product), None, key)
        )

    other = place("other")
    async with asyncio.timeout(5):
        await running.wait()
    # While the one statement allowed runs, both requests with key "k" wait for the next one.
    twice = [place("k"), place("k")]

    async def both_waiting() -> bool:
        return writes.waiting == 2

    await wait_for(both_waiting, timeout_s=5)
    released.set()
    first, second = await asyncio.gather(*twice)
    await other

    assert [len(statement) for statement in statements[:2]] == [1, 2]
    assert sorted([first.replayed, second.replayed]) == [False, True]
    assert first.body == second.body
    assert await db.fetchval("SELECT count(*) FROM orders") == 2
    assert await db.fetchval("SELECT count(*) FROM idempotency_keys") == 2
