"""Fixtures for the application on real services: the app, an HTTP client, keys, the worker."""

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest
from arq.connections import ArqRedis, RedisSettings
from arq.connections import create_pool as create_arq_pool
from fastapi import FastAPI

from api.main import create_app
from kit.settings import Settings, get_settings
from shop.catalogue import repository as products_repo
from shop.catalogue.schemas import ProductCreate, ProductPublic
from shop.clients.service import create_client
from shop.jobs.relay import OutboxRelay
from worker.arq_worker import ClaimSafeWorker
from worker.context import WorkerContext
from worker.monitor import WorkerMonitor
from worker.settings import WorkerSettings, create_worker_context


@pytest.fixture(scope="session")
def settings(pg_service: Any, redis_service: Any, mail_sink: Any) -> Settings:
    return get_settings()


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def api(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    # clean_state empties Postgres and Redis behind the session's app; its in-process catalogue
    # tier must forget what it holds too.
    app.state.orders.cache.clear_local()
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@asynccontextmanager
async def api_with(settings: Settings, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app of its own, built with some settings changed (its own pool, caches)."""
    application = create_app(settings.model_copy(update=overrides))
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


@pytest.fixture
async def limited_api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An app whose keys may make 3 requests at once, then one per 5 s."""
    async with api_with(settings, rate_limit_per_s=0.2, rate_limit_burst=3) as client:
        yield client


@pytest.fixture(scope="session")
async def db(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    """A pool of the test's own, for arranging and for asserting what was written."""
    pool = await asyncpg.create_pool(
        settings.database_url.get_secret_value(), min_size=1, max_size=4
    )
    assert pool is not None
    yield pool
    await pool.close()


async def _key(db: asyncpg.Pool, name: str, *, is_admin: bool) -> str:
    async with db.acquire() as conn:
        return (await create_client(conn, name, is_admin=is_admin)).api_key


@pytest.fixture
async def client_key(db: asyncpg.Pool) -> str:
    return await _key(db, "shop", is_admin=False)


@pytest.fixture
async def other_client_key(db: asyncpg.Pool) -> str:
    return await _key(db, "other-shop", is_admin=False)


@pytest.fixture
async def admin_key(db: asyncpg.Pool) -> str:
    return await _key(db, "admin", is_admin=True)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def make_product(db: asyncpg.Pool) -> Callable[..., Coroutine[Any, Any, ProductPublic]]:
    counter = 0

    async def make(
        *, price_cents: int = 1_000, stock: int = 10, currency: str = "EUR", name: str = ""
    ) -> ProductPublic:
        nonlocal counter
        counter += 1
        product = ProductCreate(
            sku=f"SKU-{counter}",
            name=name or f"Product {counter}",
            price_cents=price_cents,
            currency=currency,
            stock=stock,
        )
        async with db.acquire() as conn:
            created = await products_repo.insert(conn, product)
        assert created is not None
        return created

    return make


@pytest.fixture(scope="session")
async def worker_context(settings: Settings) -> AsyncIterator[WorkerContext]:
    context = await create_worker_context(settings)
    yield context
    await context.mailer.close()
    await context.webhooks.close()
    await context.redis.aclose()
    await context.pool.close()


@pytest.fixture
async def arq_redis(settings: Settings) -> AsyncIterator[ArqRedis]:
    pool = await create_arq_pool(
        RedisSettings.from_dsn(settings.redis_url.get_secret_value()),
        default_queue_name=settings.queue_name,
    )
    yield pool
    await pool.aclose()


class JobRunner:
    """Runs the pipeline the way production does, to completion: outbox relay, then ARQ jobs."""

    def __init__(self, settings: Settings, context: WorkerContext, queue: ArqRedis) -> None:
        self.settings = settings
        self.context = context
        self.relay = OutboxRelay(context.pool, queue, settings)
        # Counts outcomes as a worker process does (for `ordersctl queue`); no heartbeat here.
        self.monitor = WorkerMonitor(queue, settings)

    def worker(self, **overrides: Any) -> ClaimSafeWorker:
        options: dict[str, Any] = {
            "functions": WorkerSettings.functions,
            "queue_name": self.settings.queue_name,
            "redis_settings": RedisSettings.from_dsn(self.settings.redis_url.get_secret_value()),
            "burst": True,
            "poll_delay": 0,
            "handle_signals": False,
            "max_jobs": self.settings.worker_max_jobs,
            "ctx": {"settings": self.settings, "worker": self.context, "monitor": self.monitor},
            "keep_result": WorkerSettings.keep_result,
            "allow_abort_jobs": WorkerSettings.allow_abort_jobs,
        }
        options.update(overrides)
        return ClaimSafeWorker(**options)

    async def run_queued(self) -> ClaimSafeWorker:
        """Runs what the queue holds now in a burst worker, as a worker process would; returns
        the worker, for its counts."""
        worker = self.worker()
        try:
            await worker.main()
        finally:
            await worker.close()
        return worker

    async def run_until_idle(self, rounds: int = 10) -> int:
        """Delivers the outbox and runs jobs until neither has anything left; returns jobs run."""
        jobs_run = 0
        for _ in range(rounds):
            delivered = await self.relay.deliver_pending()
            if not delivered:
                return jobs_run
            worker = await self.run_queued()
            jobs_run += worker.jobs_complete + worker.jobs_failed
        raise AssertionError(f"the pipeline was still busy after {rounds} rounds")


@pytest.fixture
def jobs(settings: Settings, worker_context: WorkerContext, arq_redis: ArqRedis) -> JobRunner:
    return JobRunner(settings, worker_context, arq_redis)


async def wait_for(
    condition: Callable[[], Coroutine[Any, Any, bool]], timeout_s: float = 20.0
) -> None:
    """Polls `condition` until it holds; fails the test when it does not within `timeout_s`."""
    async with asyncio.timeout(timeout_s):
        while not await condition():
            await asyncio.sleep(0.05)


async def stock_of(db: asyncpg.Pool, product_id: int) -> int:
    """The product's stock as committed in Postgres, bypassing every cache."""
    stock: int = await db.fetchval("SELECT stock FROM products WHERE id = $1", product_id)
    return stock
