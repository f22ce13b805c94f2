"""The books of a fault test: what the clients were told, and the check that it all adds up.

Shared by the whole-system tests (tests/system): every accepted order ends confirmed or
rejected, the stock adds up and never goes negative, and each confirmed order has exactly one
confirmation recorded (and one email, but for copies a test allows), with no job left dead.
"""

import asyncio
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx

from kit.settings import Settings
from shop.fulfilment.mail import confirmation_message_id
from tests.app_fixtures import bearer, wait_for
from tests.processes import WorkerProcess

# Quick retries and re-delivery, so that each scenario settles in seconds, not minutes.
WORKER_ENV = {
    "JOB_RETRY_BACKOFF_S": "0.2",
    "JOB_RETRY_BACKOFF_CAP_S": "2",
    "OUTBOX_REDELIVER_AFTER_S": "3",
}


@dataclass
class Books:
    """What the clients were told: the orders accepted (201), and what each asked for."""

    api: httpx.AsyncClient
    key: str
    products: dict[int, int]  # product id -> initial stock
    accepted: dict[int, dict[int, int]] = field(default_factory=dict)
    refused: int = 0

    async def place(self, product_id: int | None = None, *, avoid: int | None = None) -> None:
        product_id = product_id or random.choice([id_ for id_ in self.products if id_ != avoid])
        quantity = random.randint(1, 3)
        response = await self.api.post(
            "/v1/orders",
            json={
                "customer": {"email": "ada@example.com", "name": "Ada Lovelace"},
                "items": [{"product_id": product_id, "quantity": quantity}],
            },
            headers=bearer(self.key),
        )
        if response.status_code == 201:
            self.accepted[response.json()["id"]] = {product_id: quantity}
        else:
            # Refused is fine (Postgres down: 503), as long as nothing was written.
            assert response.status_code == 503, response.text
            assert response.headers["Retry-After"]
            self.refused += 1

    async def place_many(
        self, count: int, product_id: int | None = None, *, avoid: int | None = None
    ) -> None:
        """`avoid` a product whose row the test has locked: the order's insert would wait."""
        await asyncio.gather(*(self.place(product_id, avoid=avoid) for _ in range(count)))


@asynccontextmanager
async def placing(books: Books, count: int, every_s: float) -> AsyncIterator[None]:
    """Orders placed `count` at a time, then a pause of `every_s`, until the block ends: paced,
    so that they keep the workers busy without piling up a backlog behind them."""
    stop = asyncio.Event()

    async def load() -> None:
        while not stop.is_set():
            await books.place_many(count)
            await asyncio.sleep(every_s)

    loader = asyncio.create_task(load())
    try:
        yield
    finally:
        stop.set()
        await loader


async def settle(books: Books, db: asyncpg.Pool, workers: list[WorkerProcess]) -> float:
    """Waits until every accepted order is finished; returns how long that took."""
    started = time.monotonic()

    async def unfinished() -> list[asyncpg.Record]:
        return await db.fetch(
            "SELECT id, status, confirmation_sent_at FROM orders WHERE id = any($1::bigint[])"
            " AND NOT (status = 'rejected'"
            " OR (status = 'confirmed' AND confirmation_sent_at IS NOT NULL))",
            list(books.accepted),
        )

    async def finished() -> bool:
        return not await unfinished()

    try:
        await wait_for(finished, timeout_s=60)
    except TimeoutError:
        print(f"unfinished orders: {[dict(order) for order in await unfinished()][:20]}")
        for worker in workers:
            output = worker.output()
            # ARQ's own failures ("! job failed", "job ... expired") from the whole run.
            print(
                "\n".join(
                    line for line in output.splitlines() if " ! " in line or "expired" in line
                )
            )
            print(output[-20_000:])
        raise
    return time.monotonic() - started


async def check_the_books(
    books: Books, db: asyncpg.Pool, mail_sink: Any, settings: Settings, *, copies_allowed: int = 0
) -> dict[str, int]:
    orders = await db.fetch("SELECT id, status, confirmation_sent_at FROM orders ORDER BY id")
    assert {order["id"] for order in orders} == set(books.accepted), "an order nobody was told of"
    confirmed = [order["id"] for order in orders if order["status"] == "confirmed"]
    assert {order["status"] for order in orders} <= {"confirmed", "rejected"}

    sold = dict.fromkeys(books.products, 0)
    for order_id in confirmed:
        for product_id, quantity in books.accepted[order_id].items():
            sold[product_id] += quantity
    stock = dict(await db.fetch("SELECT id, stock FROM products"))
    for product_id, initial in books.products.items():
        assert stock[product_id] == initial - sold[product_id] >= 0, product_id

    # One confirmation recorded per confirmed order, and one email each (a copy only where a
    # worker was killed in the window between the SMTP server's acceptance and the record).
    assert all(
        order["confirmation_sent_at"] is not None
        for order in orders
        if order["status"] == "confirmed"
    )
    sent = [message["Message-ID"] for message in mail_sink.messages]
    for order_id in confirmed:
        assert sent.count(confirmation_message_id(order_id, settings.message_id_domain)) >= 1
    assert len(sent) - len(confirmed) <= copies_allowed
    assert len(sent) >= len(confirmed)
    assert await db.fetchval("SELECT count(*) FROM dead_jobs") == 0
    return {
        "accepted": len(books.accepted),
        "confirmed": len(confirmed),
        "rejected": len(orders) - len(confirmed),
        "refused": books.refused,
        "emails": len(sent),
    }
