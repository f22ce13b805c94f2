"""Retries, timeouts and dead jobs: what happens to a job that fails, on real services."""

import asyncio
import dataclasses
import json
from collections.abc import Callable, Coroutine
from typing import Any

import aiosmtplib
import asyncpg
import httpx
import pytest
from arq import Retry
from arq.connections import ArqRedis
from arq.jobs import Job

from kit.errors import Conflict, NotFound
from kit.settings import Settings
from shop.catalogue.schemas import ProductPublic
from shop.jobs.dead_jobs import retry_dead_job
from shop.jobs.names import JobName, job_id_for
from shop.orders import repository as orders_repo
from tests.app_fixtures import JobRunner, bearer, stock_of
from worker import tasks
from worker.context import WorkerContext

MakeProduct = Callable[..., Coroutine[Any, Any, ProductPublic]]
TEMPORARY_FAILURE = "451 4.3.0 Try again later"


@pytest.fixture
def fast_settings(settings: Settings) -> Settings:
    """Three tries and millisecond backoff, so that retries take no wall-clock time to test."""
    return settings.model_copy(update={"job_max_tries": 3, "job_retry_backoff_s": 0.02})


@pytest.fixture
def fast_jobs(
    fast_settings: Settings, worker_context: WorkerContext, arq_redis: ArqRedis
) -> JobRunner:
    context = dataclasses.replace(worker_context, settings=fast_settings)
    return JobRunner(fast_settings, context, arq_redis)


@pytest.fixture
def retry_delays(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, float]]:
    """Every (try, delay) the jobs chose for a retry."""
    chosen: list[tuple[int, float]] = []
    choose = tasks.retry_delay_s

    def recording(settings: Settings, job_try: int) -> float:
        delay_s = choose(settings, job_try)
        chosen.append((job_try, delay_s))
        return delay_s

    monkeypatch.setattr(tasks, "retry_delay_s", recording)
    return chosen


async def place(api: httpx.AsyncClient, key: str, product_id: int, quantity: int = 1) -> int:
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


async def run_queued_jobs(runner: JobRunner) -> None:
    await runner.run_queued()


async def dead_jobs(db: asyncpg.Pool) -> list[asyncpg.Record]:
    return list(await db.fetch("SELECT * FROM dead_jobs ORDER BY id"))


def test_retry_delays_double_with_jitter_up_to_the_cap(settings: Settings) -> None:
    for job_try in range(1, 12):
        ceiling = min(60.0, 2.0 ** (job_try - 1))
        delays = [tasks.retry_delay_s(settings, job_try) for _ in range(200)]
        assert all(ceiling / 4 <= delay <= ceiling for delay in delays), job_try
        assert len(set(delays)) > 1, "no jitter"


def test_an_smtp_5xx_answer_is_permanent_and_a_4xx_answer_transient() -> None:
    assert tasks.is_transient(aiosmtplib.SMTPResponseException(451, "try later"))
    assert tasks.is_transient(aiosmtplib.SMTPConnectError("refused"))
    assert not tasks.is_transient(aiosmtplib.SMTPResponseException(554, "rejected"))
    assert tasks.is_transient(asyncpg.QueryCanceledError("statement timeout"))
    assert not tasks.is_transient(ValueError("bad data"))


async def test_a_transient_failure_is_retried_with_backoff_and_then_succeeds(
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    fast_jobs: JobRunner,
    fast_settings: Settings,
    arq_redis: ArqRedis,
    db: asyncpg.Pool,
    mail_sink: Any,
    retry_delays: list[tuple[int, float]],
) -> None:
    product = await make_product(stock=5)
    order_id = await place(api, client_key, product.id)
    mail_sink.reject_next(2, TEMPORARY_FAILURE)

    await fast_jobs.run_until_idle()

    assert len(mail_sink.messages) == 1
    assert await db.fetchval(
        "SELECT confirmation_sent_at IS NOT NULL FROM orders WHERE id = $1", order_id
    )
    assert [job_try for job_try, _ in retry_delays] == [1, 2]
    base = fast_settings.job_retry_backoff_s
    assert base / 4 <= retry_delays[0][1] <= base
    assert base * 2 / 4 <= retry_delays[1][1] <= base * 2
    result = await Job(job_id_for(JobName.SEND_CONFIRMATION, order_id), arq_redis).result_info()
    assert result is not None
    assert result.success
    assert result.job_try == 3
    assert await dead_jobs(db) == []


async def test_a_permanent_failure_is_not_retried_and_is_recorded_as_dead(
    fast_jobs: JobRunner, arq_redis: ArqRedis, db: asyncpg.Pool, fast_settings: Settings
) -> None:
    missing_order = 424242
    job_id = job_id_for(JobName.RESERVE_INVENTORY, missing_order)
    await arq_redis.enqueue_job(
        JobName.RESERVE_INVENTORY.value,
        missing_order,
        request_id="req-1",
        _job_id=job_id,
        _queue_name=fast_settings.queue_name,
    )

    worker = fast_jobs.worker()
    try:
        await worker.main()
    finally:
        await worker.close()

    assert (worker.jobs_failed, worker.jobs_retried) == (1, 0)
    [dead] = await dead_jobs(db)
    assert dead["job_id"] == job_id
    assert dead["function"] == "reserve_inventory"
    assert json.loads(dead["args"]) == [missing_order]
    assert json.loads(dead["kwargs"]) == {"request_id": "req-1"}
    assert dead["order_id"] == missing_order
    assert dead["error"] == "PermanentJobError('order 424242 does not exist')"
    assert "Traceback" in dead["traceback"]
    assert "shop/fulfilment/inventory.py" in dead["traceback"]
    assert dead["tries"] == 1
    assert dead["enqueued_at"] is not None
    assert dead["enqueued_at"] <= dead["failed_at"]
    assert dead["redriven_at"] is None


async def test_a_job_that_exhausts_its_tries_is_recorded_and_the_order_stays_confirmed(
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    fast_jobs: JobRunner,
    db: asyncpg.Pool,
    mail_sink: Any,
    retry_delays: list[tuple[int, float]],
) -> None:
    product = await make_product(stock=5)
    order_id = await place(api, client_key, product.id)
    mail_sink.reject_next(10, TEMPORARY_FAILURE)

    await fast_jobs.run_until_idle()

    [dead] = await dead_jobs(db)
    assert dead["job_id"] == job_id_for(JobName.SEND_CONFIRMATION, order_id)
    assert dead["tries"] == 3
    assert "451" in dead["error"]
    assert "SMTPDataError" in dead["traceback"]
    assert [job_try for job_try, _ in retry_delays] == [1, 2]
    assert mail_sink.messages == []
    order = await db.fetchrow(
        "SELECT status, confirmation_sent_at FROM orders WHERE id = $1", order_id
    )
    assert order["status"] == "confirmed"
    assert order["confirmation_sent_at"] is None


@pytest.mark.parametrize("tries_spent", [3, 50])
async def test_a_job_whose_tries_were_spent_by_dying_workers_is_recorded_without_running(
    tries_spent: int,
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    fast_jobs: JobRunner,
    fast_settings: Settings,
    arq_redis: ArqRedis,
    db: asyncpg.Pool,
) -> None:
    # Every try started and none finished: ARQ counts a try when a job starts, so a worker that
    # is killed during each leaves the count at the limit. Far past it, ARQ itself would drop
    # the job without a record; its limit is set out of reach so the job still gets here.
    product = await make_product(stock=5)
    order_id = await place(api, client_key, product.id)
    job_id = job_id_for(JobName.RESERVE_INVENTORY, order_id)
    await arq_redis.enqueue_job(
        JobName.RESERVE_INVENTORY.value,
        order_id,
        _job_id=job_id,
        _queue_name=fast_settings.queue_name,
        _job_try=tries_spent + 1,
    )

    await run_queued_jobs(fast_jobs)

    [dead] = await dead_jobs(db)
    assert (dead["job_id"], dead["tries"]) == (job_id, tries_spent + 1)
    assert dead["error"] == "no try finished (worker killed or timed out)"
    assert dead["traceback"] is None
    assert await db.fetchval("SELECT status FROM orders WHERE id = $1", order_id) == "pending"
    assert await stock_of(db, product.id) == 5


async def test_a_job_that_cannot_be_recorded_is_retried_until_it_can_be(
    worker_context: WorkerContext, fast_settings: Settings, db: asyncpg.Pool
) -> None:
    # A pool whose Postgres is unreachable: nothing listens on port 1.
    unreachable = await asyncpg.create_pool(
        "postgresql://orders@127.0.0.1:1/orders", min_size=0, max_size=1
    )
    assert unreachable is not None
    ctx: dict[str, Any] = {"job_id": "reserve_inventory:7", "job_try": 4, "enqueue_time": None}
    try:
        down = dataclasses.replace(worker_context, settings=fast_settings, pool=unreachable)
        with pytest.raises(Retry):
            await tasks.reserve_inventory({**ctx, "worker": down}, 7)
    finally:
        await unreachable.close()
    assert await dead_jobs(db) == []

    up = dataclasses.replace(worker_context, settings=fast_settings)
    assert await tasks.reserve_inventory({**ctx, "worker": up}, 7) is None
    # Recording the same death again (the worker died before telling ARQ) adds no row.
    assert await tasks.reserve_inventory({**ctx, "worker": up}, 7) is None

    [dead] = await dead_jobs(db)
    assert (dead["job_id"], dead["tries"]) == ("reserve_inventory:7", 4)


async def test_a_job_that_outlives_its_timeout_is_retried_and_then_succeeds(
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    fast_settings: Settings,
    worker_context: WorkerContext,
    arq_redis: ArqRedis,
    db: asyncpg.Pool,
    retry_delays: list[tuple[int, float]],
) -> None:
    settings = fast_settings.model_copy(update={"job_timeout_s": 1})
    runner = JobRunner(settings, dataclasses.replace(worker_context, settings=settings), arq_redis)
    product = await make_product(stock=5)
    order_id = await place(api, client_key, product.id)
    await runner.relay.deliver_pending()

    # The product row is locked, so the reservation waits past the job's timeout.
    async with db.acquire() as conn:
        lock = conn.transaction()
        await lock.start()
        await conn.execute("SELECT 1 FROM products WHERE id = $1 FOR UPDATE", product.id)
        worker = runner.worker(max_burst_jobs=1)
        try:
            await worker.main()
        finally:
            await worker.close()
        await lock.rollback()

    assert (worker.jobs_retried, worker.jobs_failed) == (1, 0)
    assert [job_try for job_try, _ in retry_delays] == [1]
    await run_queued_jobs(runner)
    await runner.run_until_idle()
    assert await db.fetchval("SELECT status FROM orders WHERE id = $1", order_id) == "confirmed"
    assert await stock_of(db, product.id) == 4
    assert await dead_jobs(db) == []


async def test_a_job_that_ignores_cancellation_is_given_up_on_before_arqs_timeout() -> None:
    released = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await released.wait()  # e.g. a connection reset that hangs
            raise

    work = asyncio.ensure_future(stubborn())
    try:
        with pytest.raises(TimeoutError, match=r"did not finish within 0\.1 s"):
            await tasks._bounded(work, 0.1)
        assert not work.done()
    finally:
        released.set()
        await asyncio.wait({work})


async def test_a_retried_dead_job_runs_again_under_a_new_id_and_only_once(
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    fast_jobs: JobRunner,
    fast_settings: Settings,
    arq_redis: ArqRedis,
    db: asyncpg.Pool,
    mail_sink: Any,
) -> None:
    product = await make_product(stock=5)
    order_id = await place(api, client_key, product.id)
    mail_sink.reject_next(3, TEMPORARY_FAILURE)
    await fast_jobs.run_until_idle()
    [dead] = await dead_jobs(db)

    new_job_id = await retry_dead_job(fast_jobs.context.pool, fast_settings, arq_redis, dead["id"])
    await run_queued_jobs(fast_jobs)

    assert new_job_id == f"send_confirmation:{order_id}:redrive-{dead['id']}"
    assert len(mail_sink.messages) == 1
    assert await db.fetchval(
        "SELECT confirmation_sent_at IS NOT NULL FROM orders WHERE id = $1", order_id
    )
    [retried] = await dead_jobs(db)
    assert retried["redriven_at"] is not None
    assert retried["redriven_job_id"] == new_job_id
    with pytest.raises(Conflict):
        await retry_dead_job(fast_jobs.context.pool, fast_settings, arq_redis, dead["id"])
    with pytest.raises(NotFound):
        await retry_dead_job(fast_jobs.context.pool, fast_settings, arq_redis, dead["id"] + 1000)
    assert len(mail_sink.messages) == 1


async def batch_job_results(arq_redis: ArqRedis, function: str) -> list[Any]:
    """The results ARQ keeps of the batch jobs of `function` (several orders per job)."""
    keys = [key.decode() async for key in arq_redis.scan_iter(f"arq:result:{function}:batch-*")]
    results = []
    for key in keys:
        info = await Job(key.removeprefix("arq:result:"), arq_redis).result_info()
        assert info is not None
        results.append(info)
    return results


async def test_a_missing_order_in_a_batch_is_recorded_dead_alone_while_the_rest_confirm(
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    fast_jobs: JobRunner,
    arq_redis: ArqRedis,
    db: asyncpg.Pool,
    mail_sink: Any,
) -> None:
    product = await make_product(stock=5)
    first, gone, last = [await place(api, client_key, product.id) for _ in range(3)]
    # Its outbox row stays: the batch job will be handed an order that does not exist.
    await db.execute("DELETE FROM orders WHERE id = $1", gone)

    await fast_jobs.run_until_idle()

    [dead] = await dead_jobs(db)
    assert (dead["job_id"], dead["function"]) == (f"reserve_inventory:{gone}", "reserve_inventory")
    assert (json.loads(dead["args"]), dead["order_id"]) == ([gone], gone)
    assert dead["error"] == f"PermanentJobError('order {gone} does not exist')"
    request_id = await db.fetchval("SELECT request_id FROM outbox WHERE order_id = $1", gone)
    assert json.loads(dead["kwargs"]) == {"request_id": request_id}
    statuses = dict(await db.fetch("SELECT id, status FROM orders"))
    assert statuses == {first: "confirmed", last: "confirmed"}
    assert await stock_of(db, product.id) == 3
    assert len(mail_sink.messages) == 2
    [batch] = await batch_job_results(arq_redis, "reserve_inventory")
    assert batch.success
    assert batch.result == {first: "confirmed", last: "confirmed", gone: dead["error"]}


async def test_an_smtp_5xx_for_one_recipient_records_only_that_order_as_dead(
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    fast_jobs: JobRunner,
    db: asyncpg.Pool,
    mail_sink: Any,
) -> None:
    product = await make_product(stock=5)
    order_ids = []
    for email in ("ada@example.com", "nobody@example.com", "grace@example.com"):
        response = await api.post(
            "/v1/orders",
            json={
                "customer": {"email": email, "name": "Customer"},
                "items": [{"product_id": product.id, "quantity": 1}],
            },
            headers=bearer(client_key),
        )
        order_ids.append(response.json()["id"])
    refused = order_ids[1]
    mail_sink.refuse_recipient("nobody@example.com", "550 5.1.1 No such mailbox")

    await fast_jobs.run_until_idle()

    [dead] = await dead_jobs(db)
    assert (dead["job_id"], dead["order_id"]) == (f"send_confirmation:{refused}", refused)
    assert dead["tries"] == 1
    assert "550" in dead["error"]
    assert "SMTPRecipientsRefused" in dead["traceback"]
    assert sorted(message["To"] for message in mail_sink.messages) == [
        "ada@example.com",
        "grace@example.com",
    ]
    sent = dict(await db.fetch("SELECT id, confirmation_sent_at IS NOT NULL FROM orders"))
    assert sent == {order_ids[0]: True, refused: False, order_ids[2]: True}


async def test_a_transient_failure_of_one_order_retries_the_batch_and_sends_each_email_once(
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    fast_jobs: JobRunner,
    db: asyncpg.Pool,
    mail_sink: Any,
    retry_delays: list[tuple[int, float]],
) -> None:
    product = await make_product(stock=5)
    order_ids = [await place(api, client_key, product.id) for _ in range(3)]
    mail_sink.reject_next(1, TEMPORARY_FAILURE)

    await fast_jobs.run_until_idle()

    assert [job_try for job_try, _ in retry_delays] == [1]
    assert len(mail_sink.messages) == 3
    assert len({message["Message-ID"] for message in mail_sink.messages}) == 3
    assert (
        await db.fetchval(
            "SELECT count(*) FROM orders WHERE id = any($1) AND confirmation_sent_at IS NOT NULL",
            order_ids,
        )
        == 3
    )
    assert await dead_jobs(db) == []


async def test_a_batch_that_fails_as_a_whole_is_run_order_by_order_and_only_the_bad_order_is_dead(
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    fast_jobs: JobRunner,
    db: asyncpg.Pool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    product = await make_product(stock=5)
    good, bad, also_good = [await place(api, client_key, product.id) for _ in range(3)]
    lock_many = orders_repo.lock_many

    async def choking_on_bad(conn: asyncpg.Connection, order_ids: list[int]) -> Any:
        if bad in order_ids:  # a bug that this one order's data triggers
            raise ValueError(f"cannot handle order {bad}")
        return await lock_many(conn, order_ids)

    monkeypatch.setattr(orders_repo, "lock_many", choking_on_bad)

    await fast_jobs.run_until_idle()

    [dead] = await dead_jobs(db)
    assert (dead["job_id"], dead["error"]) == (
        f"reserve_inventory:{bad}",
        f"ValueError('cannot handle order {bad}')",
    )
    statuses = dict(await db.fetch("SELECT id, status FROM orders"))
    assert statuses == {good: "confirmed", bad: "pending", also_good: "confirmed"}
    assert await stock_of(db, product.id) == 3
