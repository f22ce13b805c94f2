"""The fault suite: the API, a real worker process and real servers, with one fault at a time.

Each scenario places orders, injects a fault while they are being processed (kill -9 of the
worker, a Redis restart that loses its data, a Postgres restart, the SMTP server gone for a
while), and then checks the books: every accepted order ends confirmed or rejected, the stock
adds up and never goes negative, and each confirmed order has exactly one confirmation
recorded, with no job left dead.
"""

import asyncio
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import pytest
from arq.connections import ArqRedis

from kit.settings import Settings
from shop.catalogue.schemas import ProductPublic
from shop.fulfilment.mail import confirmation_message_id
from tests.app_fixtures import bearer, wait_for
from tests.processes import WorkerProcess, backends_waiting_for_a_lock, row_locked

MakeProduct = Callable[..., Coroutine[Any, Any, ProductPublic]]
SpawnWorker = Callable[..., WorkerProcess]

pytestmark = pytest.mark.slow

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


async def settle(books: Books, db: asyncpg.Pool, workers: list[WorkerProcess]) -> float:
    """Waits until every accepted order is finished; returns how long that took."""
    started = time.monotonic()

    async def finished() -> bool:
        unfinished = await db.fetchval(
            "SELECT count(*) FROM orders WHERE id = any($1::bigint[]) AND NOT ("
            " status = 'rejected' OR (status = 'confirmed' AND confirmation_sent_at IS NOT NULL))",
            list(books.accepted),
        )
        return unfinished == 0

    try:
        await wait_for(finished, timeout_s=60)
    except TimeoutError:
        for worker in workers:
            print(worker.output()[-20_000:])
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


@pytest.fixture
async def books(api: httpx.AsyncClient, client_key: str, make_product: MakeProduct) -> Books:
    products = [await make_product(stock=stock) for stock in (15, 15, 40)]
    return Books(api, client_key, {product.id: product.stock for product in products})


async def test_kill_9_of_a_worker_mid_job(
    books: Books,
    db: asyncpg.Pool,
    mail_sink: Any,
    settings: Settings,
    spawn_worker: SpawnWorker,
) -> None:
    contended = next(iter(books.products))
    await books.place_many(10)
    await books.place_many(5, contended)
    async with row_locked(db, "products", contended):
        worker = spawn_worker(**WORKER_ENV)

        async def stuck() -> bool:
            return await backends_waiting_for_a_lock(db, "orders-worker") >= 1

        await wait_for(stuck, timeout_s=30)
        worker.kill()
        killed_at = time.monotonic()
        await books.place_many(10, avoid=contended)
    replacement = spawn_worker(**WORKER_ENV)
    await settle(books, db, [worker, replacement])

    counts = await check_the_books(books, db, mail_sink, settings)
    settled_s = time.monotonic() - killed_at
    print(f"\nkill -9 mid-job: all settled {settled_s:.1f} s after the kill; {counts}")


async def test_kill_9_of_a_worker_in_the_middle_of_a_batch(
    books: Books,
    db: asyncpg.Pool,
    mail_sink: Any,
    settings: Settings,
    arq_redis: ArqRedis,
    spawn_worker: SpawnWorker,
) -> None:
    contended = next(iter(books.products))
    await books.place_many(20)
    await books.place_many(10, contended)
    async with row_locked(db, "products", contended):
        worker = spawn_worker(**WORKER_ENV)

        async def batch_stuck() -> bool:
            batches = [
                key
                async for key in arq_redis.scan_iter("arq:in-progress:reserve_inventory:batch-*")
            ]
            return bool(batches) and await backends_waiting_for_a_lock(db, "orders-worker") >= 1

        # One job holds every order's row and has locked the products before the contended one.
        await wait_for(batch_stuck, timeout_s=30)
        worker.kill()
        killed_at = time.monotonic()
        assert await db.fetchval("SELECT count(*) FROM orders WHERE status = 'pending'") == 30
        await books.place_many(10, avoid=contended)
    replacement = spawn_worker(**WORKER_ENV)
    await settle(books, db, [worker, replacement])

    # Nothing of the killed batch was committed, and it was reserved once when it ran again.
    counts = await check_the_books(books, db, mail_sink, settings)
    settled_s = time.monotonic() - killed_at
    print(f"\nkill -9 mid-batch: all settled {settled_s:.1f} s after the kill; {counts}")


async def test_redis_restarts_and_loses_the_queue(
    books: Books,
    db: asyncpg.Pool,
    mail_sink: Any,
    settings: Settings,
    redis_service: Any,
    spawn_worker: SpawnWorker,
) -> None:
    contended = next(iter(books.products))
    # Four jobs of two orders at a time, so that while four wait for the locked row the rest
    # sit in Redis.
    await books.place_many(10)
    await books.place_many(10, contended)
    async with row_locked(db, "products", contended):
        worker = spawn_worker(WORKER_MAX_JOBS="4", JOB_BATCH_SIZE="2", **WORKER_ENV)

        async def busy() -> bool:
            return await backends_waiting_for_a_lock(db, "orders-worker") >= 4

        await wait_for(busy, timeout_s=30)
        redis_service.kill()  # nothing persisted: it comes back empty
        await books.place_many(5, avoid=contended)
        redis_service.start()
        restarted_at = time.monotonic()
    await books.place_many(5)
    await settle(books, db, [worker])

    counts = await check_the_books(books, db, mail_sink, settings)
    assert worker.process is not None
    assert worker.process.poll() is None, "the worker did not ride out the Redis restart"
    settled_s = time.monotonic() - restarted_at
    print(f"\nRedis restart: all settled {settled_s:.1f} s after it; {counts}")


async def test_postgres_restarts(
    books: Books,
    db: asyncpg.Pool,
    mail_sink: Any,
    settings: Settings,
    pg_service: Any,
    spawn_worker: SpawnWorker,
) -> None:
    worker = spawn_worker(**WORKER_ENV)
    await worker.wait_until_started()
    await books.place_many(10)
    pg_service.stop()
    try:
        await books.place_many(3)  # refused with 503 while it is down
    finally:
        pg_service.start()
    restarted_at = time.monotonic()
    await books.place_many(10)
    await settle(books, db, [worker])

    counts = await check_the_books(books, db, mail_sink, settings)
    assert counts["refused"] >= 3
    settled_s = time.monotonic() - restarted_at
    print(f"\nPostgres restart: all settled {settled_s:.1f} s after it; {counts}")


async def test_the_smtp_server_is_gone_for_a_while(
    books: Books,
    db: asyncpg.Pool,
    mail_sink: Any,
    settings: Settings,
    spawn_worker: SpawnWorker,
) -> None:
    worker = spawn_worker(**WORKER_ENV)
    mail_sink.stop()
    try:
        await books.place_many(10)

        async def retrying() -> bool:
            return worker.output().count('"job_retrying"') >= 5

        async def reserved() -> bool:
            return not await db.fetchval("SELECT count(*) FROM orders WHERE status = 'pending'")

        # The orders are confirmed all the same; only their emails wait.
        await wait_for(retrying, timeout_s=30)
        await wait_for(reserved, timeout_s=30)
        assert await db.fetchval("SELECT count(*) FROM orders WHERE status = 'confirmed'") > 0
        assert not await db.fetchval(
            "SELECT count(*) FROM orders WHERE confirmation_sent_at IS NOT NULL"
        )
    finally:
        mail_sink.start()
    back_at = time.monotonic()
    await settle(books, db, [worker])

    counts = await check_the_books(books, db, mail_sink, settings)
    print(
        f"\nSMTP outage: all settled {time.monotonic() - back_at:.1f} s after it returned; {counts}"
    )
