"""A worker killed with SIGKILL mid-job, or stopped with SIGTERM: its job runs, once in effect.

The tests make a job wait at a chosen point by holding a row lock it needs, so the worker is
killed or signalled exactly there, not at a moment picked by a sleep.
"""

import asyncio
import signal
import time
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg
import httpx
import pytest
from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix
from arq.jobs import Job

from kit.settings import Settings
from shop.catalogue.schemas import ProductPublic
from shop.jobs.names import JobName, job_id_for
from tests.app_fixtures import JobRunner, bearer, stock_of, wait_for
from tests.processes import WorkerProcess, backends_waiting_for_a_lock, row_locked

MakeProduct = Callable[..., Coroutine[Any, Any, ProductPublic]]
SpawnWorker = Callable[..., WorkerProcess]

# ARQ lets a job of a dead worker run again once its in-progress lock expires: the job's ARQ
# timeout (JOB_TIMEOUT_S + 4 s) plus 10 s after the job started, 24 s with the defaults. The
# issue asks for the job to run again within 30 s of a worker being available.
RECOVERY_BOUND_S = 30.0

pytestmark = pytest.mark.slow


async def place(api: httpx.AsyncClient, key: str, product_id: int, quantity: int) -> int:
    response = await api.post(
        "/v1/orders",
        json={
            "customer": {"email": "ada@example.com", "name": "Ada Lovelace"},
            "items": [{"product_id": product_id, "quantity": quantity}],
        },
        headers=bearer(key),
    )
    assert response.status_code == 201, response.text
    order_id: int = response.json()["id"]
    return order_id


def until_waiting_for_a_lock(
    db: asyncpg.Pool, count: int = 1
) -> Callable[[], Coroutine[Any, Any, bool]]:
    async def waiting() -> bool:
        return await backends_waiting_for_a_lock(db, "orders-worker") >= count

    return waiting


def until_order(
    db: asyncpg.Pool, order_id: int, condition: str
) -> Callable[[], Coroutine[Any, Any, bool]]:
    async def holds() -> bool:
        return bool(await db.fetchval(f"SELECT {condition} FROM orders WHERE id = $1", order_id))

    return holds


async def test_a_worker_killed_while_reserving_stock_is_replaced_and_stock_is_taken_once(
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    db: asyncpg.Pool,
    mail_sink: Any,
    arq_redis: ArqRedis,
    spawn_worker: SpawnWorker,
) -> None:
    product = await make_product(stock=5)
    order_id = await place(api, client_key, product.id, 2)

    async with row_locked(db, "products", product.id):
        doomed = spawn_worker()
        await wait_for(until_waiting_for_a_lock(db), timeout_s=30)
        doomed.kill()
        killed_at = time.monotonic()

    spawn_worker()
    # The reservation is a transaction of the worker that is gone: Postgres rolls it back, and
    # the job's second try reserves the order.
    job = Job(job_id_for(JobName.RESERVE_INVENTORY, order_id), arq_redis)

    async def ran_again() -> bool:
        return await job.result_info() is not None

    await wait_for(ran_again, timeout_s=RECOVERY_BOUND_S)
    recovered_s = time.monotonic() - killed_at
    await wait_for(until_order(db, order_id, "confirmation_sent_at IS NOT NULL"), timeout_s=30)

    print(f"\nkill -9 while reserving: the job ran again {recovered_s:.1f} s after the kill")
    result = await job.result_info()
    assert result is not None
    assert (result.success, result.job_try) == (True, 2)
    assert await db.fetchval("SELECT status FROM orders WHERE id = $1", order_id) == "confirmed"
    assert await stock_of(db, product.id) == 3
    assert len(mail_sink.messages) == 1


async def test_a_worker_killed_between_smtp_acceptance_and_the_record_sends_one_copy_at_most(
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    jobs: JobRunner,
    db: asyncpg.Pool,
    mail_sink: Any,
    settings: Settings,
    spawn_worker: SpawnWorker,
) -> None:
    # The documented window: the SMTP server has the message, the order does not yet say so.
    product = await make_product(stock=5)
    order_id = await place(api, client_key, product.id, 2)
    await jobs.relay.deliver_pending()
    reserve = jobs.worker(max_burst_jobs=1)
    try:
        await reserve.main()
    finally:
        await reserve.close()
    assert await db.fetchval("SELECT status FROM orders WHERE id = $1", order_id) == "confirmed"

    async with row_locked(db, "orders", order_id):
        doomed = spawn_worker()
        await asyncio.to_thread(mail_sink.wait_for, 1, 30)
        await wait_for(until_waiting_for_a_lock(db), timeout_s=30)
        doomed.kill()
        killed_at = time.monotonic()
        # Its UPDATE is already in Postgres, waiting for our lock, and would still commit once
        # we let go; ending that backend too is the worker dying just before sending it.
        await db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'orders-worker' AND wait_event_type = 'Lock'"
        )

    spawn_worker()
    await wait_for(
        until_order(db, order_id, "confirmation_sent_at IS NOT NULL"), timeout_s=RECOVERY_BOUND_S
    )
    recovered_s = time.monotonic() - killed_at

    print(
        f"\nkill -9 after SMTP accepted: confirmation recorded {recovered_s:.1f} s after the kill"
    )
    message_ids = {message["Message-ID"] for message in mail_sink.messages}
    assert len(mail_sink.messages) == 2
    assert len(message_ids) == 1
    assert await stock_of(db, product.id) == 3


async def test_sigterm_lets_a_running_job_finish_and_requeues_one_that_cannot_in_time(
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    db: asyncpg.Pool,
    mail_sink: Any,
    arq_redis: ArqRedis,
    spawn_worker: SpawnWorker,
) -> None:
    quick = await make_product(stock=5)
    slow = await make_product(stock=5)
    quick_order = await place(api, client_key, quick.id, 1)
    slow_order = await place(api, client_key, slow.id, 1)
    slow_job_id = job_id_for(JobName.RESERVE_INVENTORY, slow_order)

    async with row_locked(db, "products", slow.id):
        async with row_locked(db, "products", quick.id):
            # A job per order, so that one can finish within the grace period and one cannot.
            worker = spawn_worker(WORKER_SHUTDOWN_GRACE_S="3", JOB_BATCH_SIZE="1")
            await wait_for(until_waiting_for_a_lock(db, 2), timeout_s=30)
            worker.signal(signal.SIGTERM)
            await asyncio.sleep(0.5)  # the worker has begun its grace period
        # The quick job gets its row now and finishes within the grace period; the slow one
        # is still waiting when the grace period ends, so the worker cancels and re-queues it.
        returncode = await asyncio.to_thread(worker.wait, 30)
        output = worker.output()
        assert await db.fetchval("SELECT status FROM orders WHERE id = $1", slow_order) == "pending"
        assert await arq_redis.zscore("orders:queue", slow_job_id) is not None
        assert not await arq_redis.exists(in_progress_key_prefix + slow_job_id)

    assert returncode == 0, output
    assert "cancelled, will be run again" in output
    assert await db.fetchval("SELECT status FROM orders WHERE id = $1", quick_order) == "confirmed"

    # Re-queued, not locked: the next worker runs it at once, without waiting out a lock.
    spawn_worker()
    await wait_for(until_order(db, slow_order, "confirmation_sent_at IS NOT NULL"), timeout_s=20)
    await wait_for(until_order(db, quick_order, "confirmation_sent_at IS NOT NULL"), timeout_s=20)
    stock = dict(await db.fetch("SELECT id, stock FROM products ORDER BY id"))
    assert stock == {quick.id: 4, slow.id: 4}
    assert len(mail_sink.messages) == 2
