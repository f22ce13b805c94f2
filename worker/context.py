from collections.abc import Callable
from dataclasses import dataclass

import asyncpg
from redis.asyncio import Redis

from kit.settings import Settings
from shop.catalogue.cache import ProductCache
from shop.fulfilment.mail import Mailer
from shop.webhooks.delivery import WebhookSender


@dataclass(frozen=True, slots=True)
class WorkerContext:
    """What every job needs, created once per worker process in `startup`."""

    settings: Settings
    pool: asyncpg.Pool
    redis: Redis
    cache: ProductCache
    mailer: Mailer
    webhooks: WebhookSender
    # Tells this process's outbox relay that a job committed to the outbox just now (the relay
    # is started after the context exists: see worker.settings.startup).
    outbox_written: Callable[[], None] = lambda: None
