from dataclasses import dataclass

import asyncpg
from redis.asyncio import Redis

from shared.catalogue import ProductCache
from shared.mail import Mailer
from shared.settings import Settings


@dataclass(frozen=True, slots=True)
class WorkerContext:
    """What every job needs, created once per worker process in `startup`."""

    settings: Settings
    pool: asyncpg.Pool
    redis: Redis
    cache: ProductCache
    mailer: Mailer
