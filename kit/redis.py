"""Redis clients with explicit timeouts: a stalled Redis must never stall a request."""

from arq.connections import ArqRedis
from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import RedisError

from kit.settings import Settings

# Errors that mean "Redis cannot help right now"; callers degrade instead of failing.
REDIS_UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (RedisError, OSError, TimeoutError)


def create_redis(settings: Settings) -> "Redis":
    # A BlockingConnectionPool rather than redis-py's default pool. The default (redis-py 5)
    # holds one asyncio.Lock across each command's connection check, so N commands issued
    # together take turns, one event-loop turn each: under load a burst of cache misses waited
    # tens of milliseconds for the lock (cached-read p99 115 ms;
    # docs/decisions/0008-blocking-redis-pool.md). The blocking pool checks connections outside
    # its lock, and bounds how many this process opens.
    pool = BlockingConnectionPool.from_url(
        settings.redis_url.get_secret_value(),
        max_connections=settings.redis_pool_max_size,
        timeout=settings.redis_timeout_s,
        socket_timeout=settings.redis_timeout_s,
        socket_connect_timeout=settings.redis_timeout_s,
        health_check_interval=30,
        # A down Redis should cost one fast failure, not a loop of reconnects inside the request.
        retry_on_timeout=False,
    )
    # from_pool: the client owns the pool, and aclose() disconnects it.
    return Redis.from_pool(pool)


def create_queue_client(settings: Settings) -> ArqRedis:
    """An ARQ client (it can enqueue) with the same timeouts, for tools outside the worker."""
    client: ArqRedis = ArqRedis.from_url(
        settings.redis_url.get_secret_value(),
        socket_timeout=settings.redis_timeout_s,
        socket_connect_timeout=settings.redis_timeout_s,
        retry_on_timeout=False,
    )
    client.default_queue_name = settings.queue_name
    return client
