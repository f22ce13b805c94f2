"""The fault suite: the API, a real worker process and real servers, with one fault at a time.

Each scenario places orders, injects a fault while they are being processed (kill -9 of the
worker, a Redis restart that loses its data, a Postgres restart, the SMTP server gone for a
while), and then checks the books: every accepted order ends confirmed or rejected, the stock
adds up and never goes negative, and each confirmed order has exactly one confirmation
recorded, with no job left dead.
"""

import time
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg
import httpx
import pytest
from arq.connections import ArqRedis

from kit.settings import Settings
from shop.catalogue.schemas import ProductPublic
from tests.app_fixtures import wait_for
from tests.processes import WorkerProcess, backends_waiting_for_a_lock, row_locked
from tests.system.books import WORKER_ENV, Books, check_the_books, settle

MakeProduct = Callable[..., Coroutine[Any, Any, ProductPublic]]
SpawnWorker = Callable[..., WorkerProcess]

pytestmark = pytest.mark.slow


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
