import asyncio
import contextlib
from typing import Any

import structlog
from arq import cron, func
from arq.connections import ArqRedis, RedisSettings

from shared.catalogue import ProductCache
from shared.db import create_pool
from shared.jobs import JobName
from shared.logging import configure_logging
from shared.mail import Mailer
from shared.outbox import OutboxRelay
from shared.redis import create_redis
from shared.settings import Settings as AppSettings
from shared.settings import get_settings
from worker.context import WorkerContext
from worker.cron import purge_idempotency_keys
from worker.tasks import ARQ_MAX_TRIES, arq_timeout_s, reserve_inventory, send_confirmation

log = structlog.get_logger(__name__)

_settings = get_settings()


async def create_worker_context(settings: AppSettings) -> WorkerContext:
    pool = await create_pool(settings, application_name="orders-worker")
    redis = create_redis(settings)
    return WorkerContext(
        settings=settings,
        pool=pool,
        redis=redis,
        cache=ProductCache(redis, settings.catalogue_cache_ttl_s),
        mailer=Mailer(settings),
    )


async def startup(ctx: dict[str, Any]) -> None:
    settings = get_settings()
    configure_logging(settings)
    worker = await create_worker_context(settings)
    ctx["settings"] = settings
    ctx["worker"] = worker
    queue: ArqRedis = ctx["redis"]
    relay = OutboxRelay(worker.pool, queue, settings)
    ctx["relay"] = relay
    ctx["relay_task"] = asyncio.create_task(relay.run(), name="outbox-relay")
    log.info("worker_started", queue=settings.queue_name)


async def shutdown(ctx: dict[str, Any]) -> None:
    relay_task: asyncio.Task[None] | None = ctx.get("relay_task")
    if relay_task is not None:
        relay_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await relay_task
    worker: WorkerContext | None = ctx.get("worker")
    if worker is not None:
        await worker.redis.aclose()
        await worker.pool.close()


class Settings:
    """ARQ reads these attributes; `arq worker.Settings` runs a worker with them."""

    functions = [
        # ARQ's limits are backstops the jobs never reach: they bound their own run time and
        # count their own tries, so that every job that gives up is recorded (worker.tasks).
        func(
            reserve_inventory,
            name=JobName.RESERVE_INVENTORY.value,
            timeout=arq_timeout_s(_settings),
            max_tries=ARQ_MAX_TRIES,
        ),
        func(
            send_confirmation,
            name=JobName.SEND_CONFIRMATION.value,
            timeout=arq_timeout_s(_settings),
            max_tries=ARQ_MAX_TRIES,
        ),
    ]
    cron_jobs = [
        cron(
            purge_idempotency_keys,
            name="purge_idempotency_keys",
            minute={7, 22, 37, 52},
            second=0,
            timeout=arq_timeout_s(_settings),
            max_tries=1,
            unique=True,
        ),
    ]
    queue_name = _settings.queue_name
    redis_settings = RedisSettings.from_dsn(_settings.redis_url.get_secret_value())
    on_startup = startup
    on_shutdown = shutdown
    max_jobs = _settings.worker_max_jobs
    job_timeout = arq_timeout_s(_settings)
    max_tries = ARQ_MAX_TRIES
    # Results double as the deduplication window for jobs the outbox hands over twice.
    keep_result = 24 * 3600
    # How often an idle worker asks Redis for due jobs: the floor of a job's start latency.
    poll_delay = 0.1
    health_check_interval = 10
    allow_abort_jobs = True
    # On SIGTERM, running jobs get this long to finish; the rest are re-queued.
    job_completion_wait = _settings.worker_shutdown_grace_s
