"""Periodic jobs: how they are scheduled, and the Idempotency-Key purge."""

from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg
import httpx

from kit.settings import Settings
from shop.catalogue.schemas import ProductPublic
from tests.api.test_orders import order_body
from tests.app_fixtures import bearer
from worker.context import WorkerContext
from worker.cron import purge_idempotency_keys
from worker.settings import WorkerSettings
from worker.tasks import arq_timeout_s

MakeProduct = Callable[..., Coroutine[Any, Any, ProductPublic]]


async def test_the_purge_is_scheduled_in_the_worker() -> None:
    jobs = {job.name: job for job in WorkerSettings.cron_jobs}

    purge = jobs["purge_idempotency_keys"]
    assert purge.coroutine is purge_idempotency_keys
    assert purge.unique
    assert purge.second == {5}


def test_no_periodic_job_lengthens_how_long_a_killed_workers_jobs_wait(settings: Settings) -> None:
    # ARQ holds every job's in-progress lock for the longest timeout of any function plus 10 s:
    # a periodic job allowed longer than the jobs would delay every job of a killed worker.
    assert all(job.timeout_s == arq_timeout_s(settings) for job in WorkerSettings.cron_jobs)


async def test_keys_older_than_the_ttl_are_purged_and_younger_ones_kept(
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    worker_context: WorkerContext,
    settings: Settings,
    db: asyncpg.Pool,
) -> None:
    product = await make_product()
    for key in ("old-1", "old-2", "young"):
        response = await api.post(
            "/v1/orders",
            json=order_body((product.id, 1)),
            headers={**bearer(client_key), "Idempotency-Key": key},
        )
        assert response.status_code == 201
    await db.execute(
        "UPDATE idempotency_keys SET created_at = now() - make_interval(secs => $1 + 60)"
        " WHERE key LIKE 'old-%'",
        settings.idempotency_key_ttl_s,
    )
    await db.execute(
        "UPDATE idempotency_keys SET created_at = now() - make_interval(secs => $1 - 60)"
        " WHERE key = 'young'",
        settings.idempotency_key_ttl_s,
    )

    purged = await purge_idempotency_keys({"worker": worker_context})
    purged_again = await purge_idempotency_keys({"worker": worker_context})

    assert purged == 2
    assert purged_again == 0
    assert await db.fetchval("SELECT array_agg(key) FROM idempotency_keys") == ["young"]
    # Orders outlive their keys: the purge forgets requests, not effects.
    assert await db.fetchval("SELECT count(*) FROM orders") == 3


async def test_a_large_backlog_is_purged_in_batches(
    client_key: str, worker_context: WorkerContext, db: asyncpg.Pool
) -> None:
    client_id = await db.fetchval("SELECT id FROM clients")
    await db.execute(
        "INSERT INTO idempotency_keys (client_id, key, endpoint, request_hash, response_status,"
        " response_body, created_at)"
        " SELECT $1, 'k' || n, 'POST /v1/orders', '\\x00', 201, '\\x00', now() - interval '3 days'"
        " FROM generate_series(1, 2500) AS n",
        client_id,
    )

    purged = await purge_idempotency_keys({"worker": worker_context})

    assert purged == 2500
    assert await db.fetchval("SELECT count(*) FROM idempotency_keys") == 0
