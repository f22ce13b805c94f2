import asyncio
import contextlib
import dataclasses
from typing import Any

import structlog
from arq import cron, func
from arq.connections import ArqRedis, RedisSettings
from arq.cron import CronJob
from arq.typing import WorkerCoroutine
from prometheus_client import start_http_server
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from kit import tracing
from kit.db import create_pool
from kit.heap import freeze_startup_heap
from kit.logging import configure_logging
from kit.metrics import mark_process_dead
from kit.redis import create_queue_client, create_redis
from kit.settings import Settings, get_settings
from shop.catalogue.cache import ProductCache
from shop.fulfilment.mail import Mailer
from shop.jobs.names import JobName
from shop.jobs.relay import OutboxRelay
from shop.webhooks.delivery import WebhookSender
from worker.context import WorkerContext
from worker.cron import (
    purge_dead_jobs,
    purge_idempotency_keys,
    purge_outbox,
    purge_webhook_events,
)
from worker.monitor import WorkerMonitor, observed
from worker.tasks import ARQ_MAX_TRIES, arq_timeout_s, reserve_inventory, send_confirmation
from worker.webhooks import arq_timeout_s as webhook_arq_timeout_s
from worker.webhooks import deliver_webhook, queue_overdue_webhooks

log = structlog.get_logger(__name__)

_settings = get_settings()
# OSError too: a refused reconnect surfaces as one, and redis-py retries only what is listed.
_RETRY_ON_ERROR = (RedisConnectionError, RedisTimeoutError, OSError)


def queue_redis_settings(settings: Settings) -> RedisSettings:
    """How the worker reaches the queue: riding out a Redis restart instead of exiting.

    ARQ lets any Redis error out of its poll loop, which ends the worker process. Each command
    is retried on a lost connection with backoff, for about half a minute; a longer outage
    still ends the worker, and its supervisor (Docker's restart policy) starts it again.
    """
    redis_settings = RedisSettings.from_dsn(settings.redis_url.get_secret_value())
    redis_settings.conn_timeout = max(1, round(settings.redis_timeout_s))
    redis_settings.retry_on_error = list(_RETRY_ON_ERROR)
    redis_settings.retry = _queue_retry()
    if settings.redis_sentinels:
        # For `arq --check`; the worker itself runs on queue_redis_pool's client.
        redis_settings.host = settings.redis_sentinel_hosts
        redis_settings.sentinel = True
        redis_settings.sentinel_master = settings.redis_sentinel_master
    return redis_settings


def queue_redis_pool(settings: Settings) -> ArqRedis | None:
    """The worker's queue client behind sentinels, retrying as queue_redis_settings says (ARQ's
    own sentinel client would not retry); None without sentinels, for ARQ to make its own."""
    if not settings.redis_sentinels:
        return None
    return create_queue_client(settings, retry=_queue_retry(), retry_on_error=list(_RETRY_ON_ERROR))


def _queue_retry() -> Retry:
    return Retry(ExponentialBackoff(cap=2.0, base=0.1), retries=20)


async def create_worker_context(settings: Settings) -> WorkerContext:
    pool = await create_pool(settings, application_name="orders-worker")
    redis = create_redis(settings)
    return WorkerContext(
        settings=settings,
        pool=pool,
        redis=redis,
        cache=ProductCache(redis, settings.catalogue_cache_ttl_s, settings.catalogue_local_ttl_s),
        mailer=Mailer(settings),
        webhooks=WebhookSender(settings),
    )


async def startup(ctx: dict[str, Any]) -> None:
    settings = get_settings()
    tracing.configure_tracing(settings, "orders-worker")
    # ARQ's poll loop, the relay and the heartbeat run in this task's context, or in tasks
    # created from it: they trace nothing of their own, a job's span traces what it does.
    tracing.quiet_background()
    configure_logging(settings)
    worker = await create_worker_context(settings)
    ctx["settings"] = settings
    # The relay enqueues inside a database transaction, so it gets a queue connection of its
    # own that fails fast when Redis is down (the rows stay pending) rather than retrying.
    queue = create_queue_client(settings)
    ctx["relay_queue"] = queue
    relay = OutboxRelay(worker.pool, queue, settings)
    ctx["relay"] = relay
    # Jobs here write outbox rows without a NOTIFY (shop/fulfilment/inventory.py): they wake this
    # relay.
    worker = dataclasses.replace(worker, outbox_written=relay.wake)
    ctx["worker"] = worker
    ctx["relay_task"] = asyncio.create_task(relay.run(), name="outbox-relay")
    # No cache listener: the worker serves no product reads, and its own invalidations wait for
    # no acknowledgement (shop/fulfilment/inventory.py), so subscribing would only make every API
    # write wait for this process's acknowledgement too.
    monitor = WorkerMonitor(ctx["redis"], settings, worker.pool)
    ctx["monitor"] = monitor
    ctx["heartbeat_task"] = asyncio.create_task(monitor.run(), name="worker-heartbeat")
    if settings.worker_metrics_port:
        ctx["metrics_server"], _ = start_http_server(
            settings.worker_metrics_port, addr=settings.worker_metrics_host
        )
    freeze_startup_heap()
    log.info(
        "worker_started",
        queue=settings.queue_name,
        worker_id=monitor.worker_id,
        metrics_port=settings.worker_metrics_port or None,
    )


async def shutdown(ctx: dict[str, Any]) -> None:
    for name in ("relay_task", "heartbeat_task"):
        task: asyncio.Task[None] | None = ctx.get(name)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    monitor: WorkerMonitor | None = ctx.get("monitor")
    if monitor is not None:
        await monitor.remove()
    relay_queue: ArqRedis | None = ctx.get("relay_queue")
    if relay_queue is not None:
        await relay_queue.aclose()
    server = ctx.get("metrics_server")
    if server is not None:
        server.shutdown()
        server.server_close()
    mark_process_dead()
    worker: WorkerContext | None = ctx.get("worker")
    if worker is not None:
        await worker.mailer.close()
        await worker.webhooks.close()
        await worker.redis.aclose()
        await worker.pool.close()
    tracing.shutdown_tracing()


def _periodic(
    job: WorkerCoroutine, *, minute: set[int] | None = None, second: set[int] | int = 0
) -> CronJob:
    """A cron job that one worker runs each time (`unique`), once, within the jobs' timeout."""
    return cron(
        job,
        name=job.__qualname__,
        minute=minute,
        second=second,
        timeout=arq_timeout_s(_settings),
        max_tries=1,
        unique=True,
    )


class WorkerSettings:
    """ARQ reads these attributes; `arq worker.Settings` runs a worker with them."""

    functions = [
        # ARQ's limits are backstops the jobs never reach: they bound their own run time and
        # count their own tries, so that every job that gives up is recorded (worker.tasks).
        func(
            observed(JobName.RESERVE_INVENTORY.value, reserve_inventory),
            name=JobName.RESERVE_INVENTORY.value,
            timeout=arq_timeout_s(_settings),
            max_tries=ARQ_MAX_TRIES,
        ),
        func(
            observed(JobName.SEND_CONFIRMATION.value, send_confirmation),
            name=JobName.SEND_CONFIRMATION.value,
            timeout=arq_timeout_s(_settings),
            max_tries=ARQ_MAX_TRIES,
        ),
        # Counts its own tries, in Postgres (shop.webhooks.delivery).
        func(
            observed(JobName.DELIVER_WEBHOOK.value, deliver_webhook),
            name=JobName.DELIVER_WEBHOOK.value,
            timeout=webhook_arq_timeout_s(_settings),
            max_tries=ARQ_MAX_TRIES,
        ),
    ]
    cron_jobs = [
        # A run stops at half the jobs' timeout, and pauses between its batches: the tables that
        # grow with orders are purged every minute, the outbox (two rows an order) every 10 s,
        # so that a run covers the rows that came due since the last one
        # (docs/decisions/0034-bounded-tables.md). With nothing due, a run is one index scan.
        _periodic(purge_idempotency_keys, second={5}),
        _periodic(purge_webhook_events, second={35}),
        _periodic(purge_outbox, second={0, 10, 20, 30, 40, 50}),
        _periodic(purge_dead_jobs, minute={27}),
        _periodic(queue_overdue_webhooks, second={15}),
    ]
    queue_name = _settings.queue_name
    redis_settings = queue_redis_settings(_settings)
    redis_pool = queue_redis_pool(_settings)
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
