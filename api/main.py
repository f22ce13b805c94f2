"""The ASGI application, served by Granian in production (`api.server`)."""

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import structlog
from fastapi import FastAPI
from redis.asyncio import Redis
from starlette.types import Scope

from api.cached_reads import CachedProductReads
from api.deps import AppState
from api.middleware import BodySizeLimitMiddleware, RequestContextMiddleware
from api.problems import install_problem_handlers
from api.rate_limit import ClusterRateLimiter, Limiter, RateLimiter
from api.routes import events, health, metrics, orders, products, webhooks
from console import routes as console_routes
from console.deps import ConsoleState
from console.sessions import SessionStore
from kit import tracing
from kit.db import create_pool
from kit.heap import freeze_startup_heap
from kit.logging import configure_logging
from kit.metrics import mark_process_dead, record_pool
from kit.redis import create_queue_client, create_redis
from kit.settings import Settings, get_settings
from shop.catalogue.cache import ProductCache
from shop.catalogue.service import reload_products_ahead
from shop.clients.auth import Authenticator
from shop.jobs.relay import RelayWaker
from shop.orders.group_commit import OrderGroupCommit

_POOL_GAUGE_INTERVAL_S = 5.0

log = structlog.get_logger(__name__)


async def _refresh_pool_gauges(pool: asyncpg.Pool) -> None:
    while True:
        record_pool(pool, "api")
        await asyncio.sleep(_POOL_GAUGE_INTERVAL_S)


def create_rate_limiter(settings: Settings, redis: Redis) -> Limiter:
    in_process = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)
    if settings.rate_limit_scope == "process":
        return in_process
    return ClusterRateLimiter(redis, in_process, timeout_s=settings.rate_limit_redis_timeout_s)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    tracer_provider = tracing.configure_tracing(settings, "orders-api")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings)
        pool = await create_pool(settings, application_name="orders-api")
        redis = create_redis(settings)
        cache = ProductCache(redis, settings.catalogue_cache_ttl_s, settings.catalogue_local_ttl_s)
        reload_products_ahead(pool, settings, cache)
        # Background loops trace nothing: a trace per pub/sub message or gauge would drown the
        # requests' (kit/tracing.py).
        background = tracing.background_context()
        listener = asyncio.create_task(
            cache.listen(), name="catalogue-cache-listener", context=background
        )
        app.state.orders = AppState(
            settings=settings,
            pool=pool,
            redis=redis,
            cache=cache,
            authenticator=Authenticator(pool, settings.auth_cache_ttl_s),
            rate_limiter=create_rate_limiter(settings, redis),
            relay_waker=RelayWaker(pool, settings.db_pool_acquire_timeout_s),
            order_writes=OrderGroupCommit(pool, settings),
        )
        # Pool gauges are refreshed in the background too, not only when this process happens
        # to answer a scrape: in multiprocess mode every process's last value is summed.
        pool_gauges = asyncio.create_task(
            _refresh_pool_gauges(pool), name="pool-gauges", context=background
        )
        console_queue = create_queue_client(settings) if settings.console_enabled else None
        if console_queue is not None:
            app.state.console = ConsoleState(
                settings=settings,
                pool=pool,
                queue=console_queue,
                sessions=SessionStore(console_queue, settings.console_session_ttl_s),
            )
        # Logged by the app rather than left to the server: Granian says nothing of the lifespan.
        log.info("api_started", pid=os.getpid(), frozen_objects=freeze_startup_heap())
        try:
            yield
        finally:
            for task in (pool_gauges, listener):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await cache.close()
            if console_queue is not None:
                await console_queue.aclose()
            await app.state.orders.relay_waker.close()
            await redis.aclose()
            await pool.close()
            mark_process_dead()
            log.info("api_stopped", pid=os.getpid())
            # Exports the spans still buffered, before the server exits.
            if tracer_provider is not None:
                tracer_provider.force_flush()

    app = FastAPI(
        title="Orders API",
        version="1.0.0",
        summary="Place orders; stock is reserved and confirmations are emailed asynchronously.",
        lifespan=lifespan,
        # FastAPI's own OpenTelemetry bridge, off always. Off, it would trace through any
        # provider another library installed; on, the server span is the ASGI
        # instrumentation's, outside the cached reads, and the bridge would add none of its
        # own but still cost about 100 µs a request (docs/tracing.md).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    install_problem_handlers(app)
    app.include_router(orders.router)
    app.include_router(products.router)
    app.include_router(webhooks.router)
    app.include_router(events.router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    # Last, so that the API's own routes match first: the console costs the hot paths nothing
    # (docs/console.md#cost).
    if settings.console_enabled:
        app.include_router(console_routes.router)
    # Pure ASGI layers, outermost last: timing wraps everything, including the 413 answer and
    # the product reads answered from the in-process cache before routing.
    app.add_middleware(CachedProductReads, route=products.product_route())
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestContextMiddleware, slow_request_s=settings.slow_request_s)
    if tracer_provider is not None:
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

        # Outermost, so the server span covers every answer (the cached reads, the 413s) and
        # the request id's log lines; it continues a client's incoming `traceparent`. Named by
        # the method here, by the route once routed (RequestContextMiddleware): never the raw
        # path, one name per route. Only when tracing is on: off, no layer is added at all.
        app.add_middleware(
            OpenTelemetryMiddleware,
            tracer_provider=tracer_provider,
            default_span_details=_span_details,
            exclude_spans=["receive", "send"],
        )
    return app


def _span_details(scope: Scope) -> tuple[str, dict[str, str]]:
    return scope.get("method", "HTTP"), {}


app = create_app()
