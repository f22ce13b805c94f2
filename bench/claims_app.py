"""The guide's claims as endpoints, each next to its alternative. Never part of the product.

`hello_app` is the ceiling: the least a FastAPI endpoint can do under the same server settings.
The middleware apps are `hello_app`'s routes with one layer added. `claims_app` holds the
database and background-work variants; it reads the same settings as the product.
"""

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import psycopg
from arq.connections import ArqRedis, RedisSettings, create_pool
from fastapi import BackgroundTasks, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from psycopg.rows import dict_row
from pydantic import BaseModel

from api.middleware import RequestContextMiddleware
from bench.noop_worker import MARK_DONE, QUEUE_NAME, done_key
from kit.db import create_pool as create_db_pool
from kit.heap import freeze_startup_heap
from kit.redis import create_redis
from kit.settings import get_settings

log = logging.getLogger("bench.claims")


class Greeting(BaseModel):
    name: str


@asynccontextmanager
async def _served_like_the_api(_app: FastAPI) -> AsyncIterator[None]:
    # The API freezes its start-up heap (kit.heap); without it, full collections paused these
    # apps for tens of milliseconds under POST load and made their p99 a measure of the collector.
    freeze_startup_heap()
    yield


def _hello_routes(app: FastAPI) -> FastAPI:
    @app.get("/hello")
    async def hello() -> dict[str, str]:
        return {"message": "Hello, world"}

    @app.post("/hello")
    async def greet(greeting: Greeting) -> Greeting:
        return greeting

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


hello_app = _hello_routes(FastAPI(lifespan=_served_like_the_api))

# The guide's "BAD" middleware: reads and logs every body, through BaseHTTPMiddleware.
body_logging_app = _hello_routes(FastAPI(lifespan=_served_like_the_api))


@body_logging_app.middleware("http")
async def log_everything(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    body = await request.body()
    response = await call_next(request)
    log.info("Request body: %s", body)
    return response


# The guide's "GOOD" middleware: a timing header, still through BaseHTTPMiddleware.
http_timing_app = _hello_routes(FastAPI(lifespan=_served_like_the_api))


@http_timing_app.middleware("http")
async def add_timing_header(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    start = time.perf_counter()
    response = await call_next(request)
    response.headers["X-Process-Time"] = f"{time.perf_counter() - start:.4f}"
    return response


# The product's pure ASGI layer: timing header, request id, slow-request log.
asgi_timing_app = _hello_routes(FastAPI(lifespan=_served_like_the_api))
asgi_timing_app.add_middleware(RequestContextMiddleware, slow_request_s=0.5)


class ProductRow(BaseModel):
    id: int
    name: str
    price_cents: int


_PRODUCT_BY_ID = "SELECT id, name, price_cents FROM products WHERE id = $1"
_PRODUCT_BY_ID_PSYCOPG = "SELECT id, name, price_cents FROM products WHERE id = %s"
_PAGE = 100


class _Resources:
    pool: asyncpg.Pool
    sync_conn: psycopg.Connection[Any]
    queue: ArqRedis
    dsn: str


resources = _Resources()
_thread_connections = threading.local()


def _thread_connection() -> psycopg.Connection[Any]:
    """One sync connection per threadpool thread, as a sync ORM session factory would hold."""
    conn: psycopg.Connection[Any] | None = getattr(_thread_connections, "conn", None)
    if conn is None:
        conn = psycopg.connect(
            resources.dsn, autocommit=True, connect_timeout=5, row_factory=dict_row
        )
        _thread_connections.conn = conn
    return conn


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    resources.dsn = settings.database_url.get_secret_value()
    resources.pool = await create_db_pool(settings, application_name="bench-claims")
    resources.sync_conn = psycopg.connect(
        resources.dsn, autocommit=True, connect_timeout=5, row_factory=dict_row
    )
    resources.queue = await create_pool(
        RedisSettings.from_dsn(settings.redis_url.get_secret_value()),
        default_queue_name=QUEUE_NAME,
    )
    app.state.redis = create_redis(settings)
    freeze_startup_heap()
    try:
        yield
    finally:
        await resources.queue.aclose()
        await app.state.redis.aclose()
        resources.sync_conn.close()
        await resources.pool.close()


claims_app = _hello_routes(FastAPI(lifespan=_lifespan))


def _row(record: Any) -> dict[str, Any]:
    return {} if record is None else dict(record)


# --- sync driver inside async def / async driver / sync def in the threadpool -------------------


@claims_app.get("/driver/sync-in-async/{product_id}")
async def sync_driver_in_async(product_id: int) -> dict[str, Any]:
    # Blocks the event loop for the whole round trip: every other request waits.
    row = resources.sync_conn.execute(_PRODUCT_BY_ID_PSYCOPG, (product_id,)).fetchone()
    return _row(row)


@claims_app.get("/driver/async/{product_id}")
async def async_driver(product_id: int) -> dict[str, Any]:
    return _row(await resources.pool.fetchrow(_PRODUCT_BY_ID, product_id))


@claims_app.get("/driver/sync-def/{product_id}")
def sync_driver_in_threadpool(product_id: int) -> dict[str, Any]:
    row = _thread_connection().execute(_PRODUCT_BY_ID_PSYCOPG, (product_id,)).fetchone()
    return _row(row)


# --- a new connection per request / the pool ----------------------------------------------------


@claims_app.get("/conn/new/{product_id}")
async def new_connection(product_id: int) -> dict[str, Any]:
    conn = await asyncpg.connect(resources.dsn, timeout=5)
    try:
        return _row(await conn.fetchrow(_PRODUCT_BY_ID, product_id))
    finally:
        await conn.close(timeout=2)


@claims_app.get("/conn/pool/{product_id}")
async def pooled_connection(product_id: int) -> dict[str, Any]:
    async with resources.pool.acquire(timeout=2) as conn:
        return _row(await conn.fetchrow(_PRODUCT_BY_ID, product_id))


# --- SELECT * as dicts / explicit columns and a typed response ----------------------------------


@claims_app.get("/serialize/star-dicts")
async def select_star_as_dicts():  # type: ignore[no-untyped-def]  # the guide's BAD, verbatim
    rows = await resources.pool.fetch("SELECT * FROM products ORDER BY id LIMIT $1", _PAGE)
    return [dict(row) for row in rows]


@claims_app.get("/serialize/columns-typed")
async def columns_typed() -> list[ProductRow]:
    # The declared return type is validated and dumped to JSON bytes in pydantic-core.
    rows = await resources.pool.fetch(
        "SELECT id, name, price_cents FROM products ORDER BY id LIMIT $1", _PAGE
    )
    return [ProductRow.model_validate(dict(row)) for row in rows]


@claims_app.get(
    "/serialize/columns-typed-response-class",
    response_model=list[ProductRow],
    response_class=JSONResponse,
)
async def columns_typed_response_class() -> Any:
    # The guide's GOOD, with a response_class set: FastAPI takes its slower jsonable path.
    rows = await resources.pool.fetch(
        "SELECT id, name, price_cents FROM products ORDER BY id LIMIT $1", _PAGE
    )
    return [ProductRow.model_validate(dict(row)) for row in rows]


# --- BackgroundTasks / an ARQ job ---------------------------------------------------------------


async def _mark_done(app: FastAPI, token: str, delay_s: float) -> None:
    if delay_s:
        await asyncio.sleep(delay_s)
    await app.state.redis.set(done_key(token), repr(time.time()), ex=600)


@claims_app.post("/work/background/{token}", status_code=202)
async def background_task(
    token: str, request: Request, tasks: BackgroundTasks, delay_s: float = 0.0
) -> dict[str, str]:
    tasks.add_task(_mark_done, request.app, token, delay_s)
    return {"token": token}


@claims_app.post("/work/queue/{token}", status_code=202)
async def queued_job(token: str, delay_s: float = 0.0) -> dict[str, str]:
    await resources.queue.enqueue_job(MARK_DONE, token, delay_s, _job_id=f"done:{token}")
    return {"token": token}
