"""The outbox relay hands rows over as batch jobs, and hands over again those Redis lost, only
those."""

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg
import httpx
from arq.connections import ArqRedis
from arq.constants import job_key_prefix, result_key_prefix
from arq.jobs import Job

from kit.settings import Settings
from shop.catalogue.schemas import ProductPublic
from shop.jobs.names import batch_job_id
from shop.jobs.relay import OutboxRelay, RelayWaker
from tests.app_fixtures import JobRunner, bearer, stock_of
from worker.context import WorkerContext

MakeProduct = Callable[..., Coroutine[Any, Any, ProductPublic]]


async def place(api: httpx.AsyncClient, key: str, product_id: int) -> int:
    response = await api.post(
        "/v1/orders",
        json={
            "customer": {"email": "ada@example.com", "name": "Ada Lovelace"},
            "items": [{"product_id": product_id, "quantity": 1}],
        },
        headers=bearer(key),
    )
    assert response.status_code == 201, response.text
    order_id: int = response.json()["id"]
    return order_id


def eager_relay(context: WorkerContext, queue: ArqRedis, settings: Settings) -> OutboxRelay:
    """A relay that looks for lost jobs among those handed over more than 10 ms ago."""
    return OutboxRelay(
        context.pool, queue, settings.model_copy(update={"outbox_redeliver_after_s": 0.01})
    )


async def test_jobs_that_redis_lost_are_handed_over_again_and_run_once(
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    jobs: JobRunner,
    worker_context: WorkerContext,
    arq_redis: ArqRedis,
    settings: Settings,
    db: asyncpg.Pool,
    mail_sink: Any,
) -> None:
    product = await make_product(stock=5)
    lost = await place(api, client_key, product.id)
    done = await place(api, client_key, product.id)
    relay = eager_relay(worker_context, arq_redis, settings)
    assert await relay.deliver_pending() == 2
    outbox_ids = [row["id"] for row in await db.fetch("SELECT id FROM outbox ORDER BY id")]
    batch = batch_job_id("reserve_inventory", outbox_ids)
    await arq_redis.delete(f"arq:job:{batch}")
    await arq_redis.zrem(settings.queue_name, batch)
    await asyncio.sleep(0.05)

    # Both rows again, as the same batch job: ARQ has nothing under its id any more.
    assert await relay.redeliver_lost() == 2
    assert await arq_redis.zscore(settings.queue_name, batch) is not None
    await jobs.run_queued()
    await jobs.run_until_idle()
    assert await relay.redeliver_lost() == 0

    statuses = dict(await db.fetch("SELECT id, status FROM orders"))
    assert statuses == {lost: "confirmed", done: "confirmed"}
    assert await stock_of(db, product.id) == 3
    assert len(mail_sink.messages) == 2


async def test_pending_rows_go_to_the_queue_as_batch_jobs_of_one_function_each(
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    worker_context: WorkerContext,
    arq_redis: ArqRedis,
    settings: Settings,
    db: asyncpg.Pool,
) -> None:
    product = await make_product(stock=10)
    order_ids = [await place(api, client_key, product.id) for _ in range(5)]
    rows = await db.fetch("SELECT id, request_id FROM outbox ORDER BY id")
    relay = OutboxRelay(
        worker_context.pool, arq_redis, settings.model_copy(update={"job_batch_size": 2})
    )

    assert await relay.deliver_pending() == 5

    # Up to two orders per job, in row order; the one left over is its row's own job, called
    # as a job of one order always was.
    first, second = (
        batch_job_id("reserve_inventory", [r["id"] for r in rows[i : i + 2]]) for i in (0, 2)
    )
    single = f"reserve_inventory:{order_ids[4]}"
    queued = await arq_redis.zrange(settings.queue_name, 0, -1)
    assert sorted(job_id.decode() for job_id in queued) == sorted([first, second, single])
    info = await Job(first, arq_redis).info()
    assert info is not None
    assert (info.function, info.args) == ("reserve_inventory", (order_ids[:2],))
    assert info.kwargs == {"request_ids": [rows[0]["request_id"], rows[1]["request_id"]]}
    alone = await Job(single, arq_redis).info()
    assert alone is not None
    assert (alone.args, alone.kwargs) == ((order_ids[4],), {"request_id": rows[4]["request_id"]})

    # The same rows handed over again are the same jobs, which ARQ drops.
    await db.execute("UPDATE outbox SET delivered_at = NULL")
    assert await relay.deliver_pending() == 5
    assert await arq_redis.zcard(settings.queue_name) == 3


async def test_jobs_redis_still_has_or_that_are_dead_are_not_handed_over_again(
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    worker_context: WorkerContext,
    arq_redis: ArqRedis,
    settings: Settings,
    db: asyncpg.Pool,
) -> None:
    product = await make_product(stock=5)
    queued = await place(api, client_key, product.id)
    dead = await place(api, client_key, product.id)
    relay = eager_relay(worker_context, arq_redis, settings)
    await relay.deliver_pending()
    await arq_redis.flushall()
    await db.execute(
        "INSERT INTO dead_jobs (job_id, function, args, kwargs, order_id, error, tries)"
        " VALUES ($1, 'reserve_inventory', $2, '{}', $3, 'gave up', 8)",
        f"reserve_inventory:{dead}",
        f"[{dead}]",
        dead,
    )
    await asyncio.sleep(0.05)

    assert await relay.redeliver_lost() == 1  # the queued one, which the flush lost
    await asyncio.sleep(0.05)
    assert await relay.redeliver_lost() == 0  # ARQ has it again, and drops the copy
    assert await arq_redis.zscore(settings.queue_name, f"reserve_inventory:{queued}") is not None
    assert await arq_redis.zscore(settings.queue_name, f"reserve_inventory:{dead}") is None


async def test_a_job_arq_finished_without_its_work_done_is_handed_over_again(
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    worker_context: WorkerContext,
    arq_redis: ArqRedis,
    settings: Settings,
    db: asyncpg.Pool,
) -> None:
    product = await make_product(stock=5)
    order_id = await place(api, client_key, product.id)
    relay = eager_relay(worker_context, arq_redis, settings)
    await relay.deliver_pending()
    job_id = f"reserve_inventory:{order_id}"
    # What ARQ leaves of a job it failed itself: no job key, a result kept for a day.
    await arq_redis.delete(job_key_prefix + job_id)
    await arq_redis.zrem(settings.queue_name, job_id)
    await arq_redis.set(result_key_prefix + job_id, b"failed", ex=24 * 3600)
    await asyncio.sleep(0.05)

    assert await relay.redeliver_lost() == 1
    assert await arq_redis.zscore(settings.queue_name, job_id) is not None
    assert await arq_redis.exists(result_key_prefix + job_id) == 0
    await asyncio.sleep(0.05)
    assert await relay.redeliver_lost() == 0  # queued now: the copy is dropped


async def test_pokes_that_arrive_while_a_notification_is_in_flight_share_the_next_one(
    worker_context: WorkerContext, settings: Settings
) -> None:
    heard: list[str] = []
    listener = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        await listener.add_listener("outbox", lambda *args: heard.append(args[2]))
        waker = RelayWaker(worker_context.pool, settings.db_pool_acquire_timeout_s)
        for _ in range(50):
            waker.poke()
        await asyncio.sleep(0)  # the first notification is on its way now
        for _ in range(50):
            waker.poke()
        await waker.close()
        await asyncio.sleep(0.2)  # notifications reach the listener asynchronously
    finally:
        await listener.close()
    # The first 50 pokes share one notification, the 50 while it was in flight a second.
    assert heard == ["outbox", "outbox"]
