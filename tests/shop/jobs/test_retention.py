"""Retention: the outbox keeps delivered rows OUTBOX_RETENTION_S and the dead-job ledger keeps
retried jobs DEAD_JOB_RETENTION_S, purged in bounded batches beside a relay that keeps working."""

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg
import httpx
import pytest
from arq.connections import ArqRedis

from kit.purge import purge_in_batches
from kit.settings import Settings
from shop.catalogue.schemas import ProductPublic
from shop.jobs import outbox_repository as outbox_repo
from shop.jobs import retention
from shop.jobs.relay import OutboxRelay
from tests.shop.jobs.test_relay import place
from worker.context import WorkerContext
from worker.cron import purge_dead_jobs, purge_outbox
from worker.settings import WorkerSettings

MakeProduct = Callable[..., Coroutine[Any, Any, ProductPublic]]

RETENTION_S = 3600


def retaining(settings: Settings, **update: Any) -> Settings:
    return settings.model_copy(update={"outbox_retention_s": RETENTION_S, **update})


async def add_rows(
    db: asyncpg.Pool, count: int, *, delivered_ago_s: float | None, prefix: str
) -> None:
    """`count` outbox rows of no order, delivered `delivered_ago_s` ago (None: pending)."""
    await db.execute(
        "INSERT INTO outbox (job_id, function, args, created_at, delivered_at)"
        " SELECT $1 || n, 'deliver_webhook', '[]'::jsonb,"
        " now() - make_interval(secs => coalesce($2, 0) + 1),"
        " now() - make_interval(secs => $2)"
        " FROM generate_series(1, $3) AS n",
        prefix,
        delivered_ago_s,
        count,
    )


async def job_ids(db: asyncpg.Pool) -> set[str]:
    return {row["job_id"] for row in await db.fetch("SELECT job_id FROM outbox")}


async def test_the_purges_are_scheduled_in_the_worker(settings: Settings) -> None:
    jobs = {job.name: job for job in WorkerSettings.cron_jobs}

    assert jobs["purge_outbox"].coroutine is purge_outbox
    assert jobs["purge_dead_jobs"].coroutine is purge_dead_jobs
    assert all(jobs[name].unique for name in ("purge_outbox", "purge_dead_jobs"))
    # A run stops itself at its budget, before ARQ would cancel it.
    assert all(
        (jobs[name].timeout_s or 0) > settings.job_timeout_s / 2
        for name in ("purge_outbox", "purge_dead_jobs")
    )


async def test_only_delivered_rows_older_than_the_retention_of_finished_work_are_purged(
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    settings: Settings,
    db: asyncpg.Pool,
) -> None:
    await add_rows(db, 3, delivered_ago_s=RETENTION_S + 60, prefix="old:")
    await add_rows(db, 2, delivered_ago_s=RETENTION_S - 60, prefix="young:")
    await add_rows(db, 2, delivered_ago_s=None, prefix="pending:")
    # An order still pending long after its job was handed over: the relay re-delivers from
    # its row, so age alone does not make it go.
    product = await make_product(stock=5)
    unfinished = await place(api, client_key, product.id)
    await db.execute(
        "UPDATE outbox SET delivered_at = now() - make_interval(secs => $1) WHERE order_id = $2",
        RETENTION_S + 60,
        unfinished,
    )

    purged = await retention.purge_outbox(db, retaining(settings), budget_s=5)

    assert purged == 3
    assert await job_ids(db) == {
        "young:1",
        "young:2",
        "pending:1",
        "pending:2",
        f"reserve_inventory:{unfinished}",
    }


async def test_the_purge_is_idempotent(settings: Settings, db: asyncpg.Pool) -> None:
    await add_rows(db, 5, delivered_ago_s=RETENTION_S + 60, prefix="old:")

    first = await retention.purge_outbox(db, retaining(settings), budget_s=5)
    second = await retention.purge_outbox(db, retaining(settings), budget_s=5)

    assert (first, second) == (5, 0)


async def test_the_purge_deletes_in_batches_of_the_configured_size(
    settings: Settings, db: asyncpg.Pool
) -> None:
    await add_rows(db, 2_500, delivered_ago_s=RETENTION_S + 60, prefix="old:")
    batches: list[int] = []

    async def delete_batch(conn: asyncpg.Connection, older_than_s: float, limit: int) -> int:
        deleted = await outbox_repo.delete_delivered(conn, older_than_s, limit)
        batches.append(deleted)
        return deleted

    purged = await purge_in_batches(
        db,
        retaining(settings, purge_batch_size=1_000),
        delete_batch,
        RETENTION_S,
        budget_s=5,
        what="outbox",
    )

    assert purged == 2_500
    assert batches == [1_000, 1_000, 500]
    assert await db.fetchval("SELECT count(*) FROM outbox") == 0


async def test_a_purge_pauses_after_each_full_batch_its_factor_times_as_long_as_the_batch(
    settings: Settings, db: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    await add_rows(db, 250, delivered_ago_s=RETENTION_S + 60, prefix="old:")
    batch_s: list[float] = []
    pauses_s: list[float] = []

    async def delete_batch(conn: asyncpg.Connection, older_than_s: float, limit: int) -> int:
        started = time.monotonic()
        deleted = await outbox_repo.delete_delivered(conn, older_than_s, limit)
        batch_s.append(time.monotonic() - started)
        return deleted

    async def pause(seconds: float) -> None:
        pauses_s.append(seconds)

    monkeypatch.setattr("kit.purge.sleep", pause)
    purged = await purge_in_batches(
        db,
        retaining(settings, purge_batch_size=100, purge_pause_factor=3.0),
        delete_batch,
        RETENTION_S,
        budget_s=30,
        what="outbox",
    )

    assert purged == 250
    # None after the last, short batch: the run is over.
    assert len(batch_s) == 3
    assert len(pauses_s) == 2
    # The purge times the batch's whole transaction, a little more than its statement.
    assert all(pause >= 3.0 * batch for pause, batch in zip(pauses_s, batch_s, strict=False))


async def test_a_run_stops_after_its_budget_and_the_next_one_goes_on(
    settings: Settings, db: asyncpg.Pool
) -> None:
    await add_rows(db, 300, delivered_ago_s=RETENTION_S + 60, prefix="old:")
    small = retaining(settings, purge_batch_size=100)

    # A spent budget still lets one batch go, so that every run makes progress.
    first = await retention.purge_outbox(db, small, budget_s=0)
    rest = await retention.purge_outbox(db, small, budget_s=5)

    assert (first, rest) == (100, 200)


async def test_rows_a_relay_holds_are_skipped_not_waited_for(
    settings: Settings, db: asyncpg.Pool
) -> None:
    await add_rows(db, 4, delivered_ago_s=RETENTION_S + 60, prefix="old:")
    async with db.acquire() as relay, relay.transaction():
        await relay.execute("SELECT id FROM outbox WHERE job_id = 'old:1' FOR UPDATE")

        purged = await retention.purge_outbox(db, retaining(settings), budget_s=5)

    assert purged == 3
    assert await job_ids(db) == {"old:1"}


async def test_the_purge_gives_up_at_once_behind_a_table_lock(
    settings: Settings, db: asyncpg.Pool
) -> None:
    await add_rows(db, 4, delivered_ago_s=RETENTION_S + 60, prefix="old:")
    async with db.acquire() as migration, migration.transaction():
        await migration.execute("LOCK TABLE outbox IN ACCESS EXCLUSIVE MODE")

        purged = await retention.purge_outbox(
            db, retaining(settings, purge_lock_timeout_ms=50), budget_s=5
        )

    assert purged == 0
    assert await db.fetchval("SELECT count(*) FROM outbox") == 4


async def test_the_purge_finds_its_rows_through_the_delivered_at_index(
    settings: Settings, db: asyncpg.Pool
) -> None:
    # A table of mostly young rows, as in production: the old ones are a thin slice of it.
    await add_rows(db, 20_000, delivered_ago_s=60, prefix="young:")
    await add_rows(db, 200, delivered_ago_s=RETENTION_S + 60, prefix="old:")
    await db.execute("ANALYZE outbox")
    async with db.acquire() as conn:
        plan = await outbox_repo.explain_delete_delivered(conn, RETENTION_S, 1_000)

    assert "ix_outbox_delivered_at" in plan
    assert "Seq Scan on outbox" not in plan


async def test_the_relay_keeps_delivering_while_the_purge_runs(
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    worker_context: WorkerContext,
    arq_redis: ArqRedis,
    settings: Settings,
    db: asyncpg.Pool,
) -> None:
    await add_rows(db, 20_000, delivered_ago_s=RETENTION_S + 60, prefix="old:")
    product = await make_product(stock=100)
    relay = OutboxRelay(worker_context.pool, arq_redis, settings)
    purge = asyncio.create_task(
        retention.purge_outbox(
            worker_context.pool, retaining(settings, purge_batch_size=200), budget_s=30
        )
    )
    delivered = 0
    orders: list[int] = []
    for _ in range(20):
        orders.append(await place(api, client_key, product.id))
        delivered += await relay.deliver_pending()
    purged = await purge

    assert delivered == 20
    assert purged == 20_000
    assert await db.fetchval(
        "SELECT count(*) FROM outbox WHERE order_id = any($1::bigint[])"
        " AND delivered_at IS NOT NULL",
        orders,
    ) == len(orders)


async def test_retried_dead_jobs_past_their_retention_are_purged_and_unretried_ones_kept(
    settings: Settings, db: asyncpg.Pool
) -> None:
    retention_s = settings.dead_job_retention_s
    await db.execute(
        "INSERT INTO dead_jobs (job_id, function, args, kwargs, error, tries, failed_at,"
        " redriven_at, redriven_job_id)"
        " VALUES ('retried-long-ago', 'reserve_inventory', '[1]', '{}', 'boom', 8,"
        "         now() - make_interval(secs => $1 + 7200), now() - make_interval(secs => $1 + 60),"
        "         'retry-1'),"
        "        ('retried-lately', 'reserve_inventory', '[2]', '{}', 'boom', 8,"
        "         now() - make_interval(secs => $1 + 7200), now() - interval '1 hour', 'retry-2'),"
        "        ('never-retried', 'reserve_inventory', '[3]', '{}', 'boom', 8,"
        "         now() - make_interval(secs => $1 + 7200), NULL, NULL)",
        float(retention_s),
    )

    purged = await retention.purge_dead_jobs(db, settings, budget_s=5)

    assert purged == 1
    kept = {row["job_id"] for row in await db.fetch("SELECT job_id FROM dead_jobs")}
    assert kept == {"retried-lately", "never-retried"}
