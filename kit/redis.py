"""Redis clients with explicit timeouts: a stalled Redis must never stall a request.

With REDIS_SENTINELS set, every client asks the sentinels where the master named
REDIS_SENTINEL_MASTER is, at each new connection, and a connection that finds the master demoted
(or gone) is dropped, so that the next one goes to whichever replica the sentinels promoted.
"""

from typing import Any

from arq.connections import ArqRedis
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import (
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
)
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from kit.settings import Settings

# Errors that mean "Redis cannot help right now"; callers degrade instead of failing.
REDIS_UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (RedisError, OSError, TimeoutError)


class _SentinelPool(SentinelConnectionPool):
    """Sentinel's pool, which also closes its connections to the sentinels when it is closed.

    redis-py leaves those to the garbage collector, after the event loop that opened them may be
    gone. A disconnect of the idle connections alone (the master moved) keeps them.
    """

    async def disconnect(self, inuse_connections: bool = True) -> None:
        await super().disconnect(inuse_connections)
        if inuse_connections:
            for sentinel in self.sentinel_manager.sentinels:
                await sentinel.aclose()


class BlockingSentinelConnectionPool(_SentinelPool, BlockingConnectionPool):
    """Sentinel's pool (connections to the current master) with the blocking pool's bounds and
    unlocked connection checks (docs/decisions/0008-blocking-redis-pool.md)."""


class _MasterFollowingConnection(SentinelManagedConnection):
    """Asks the sentinels where the master is at every try to connect.

    redis-py's sentinel connection asks once, then connects to that address through the plain
    connection's own retries: the worker's client (20 tries with backoff, about 30 s) kept
    knocking on the killed primary for that long after a replica had been promoted. Here each
    address gets one try, and the retries go round the sentinels again.
    """

    async def connect_to(self, address: tuple[str, int]) -> None:
        retry, self.retry = self.retry, Retry(NoBackoff(), 0)
        try:
            await super().connect_to(address)  # type: ignore[no-untyped-call]
        finally:
            self.retry = retry


def _sentinel(settings: Settings, **connection_kwargs: Any) -> Sentinel:
    password = settings.redis_sentinel_password
    sentinel_kwargs: dict[str, Any] = {
        "socket_timeout": settings.redis_timeout_s,
        "socket_connect_timeout": settings.redis_timeout_s,
    }
    if password is not None:
        sentinel_kwargs["password"] = password.get_secret_value()
    # The data nodes' database, user and password are REDIS_URL's; its host is not used.
    url = BlockingConnectionPool.from_url(settings.redis_url.get_secret_value())
    for name in ("db", "username", "password"):
        if url.connection_kwargs.get(name) is not None:
            connection_kwargs.setdefault(name, url.connection_kwargs[name])
    return Sentinel(  # type: ignore[no-untyped-call]
        settings.redis_sentinel_hosts,
        sentinel_kwargs=sentinel_kwargs,
        connection_class=_MasterFollowingConnection,
        **connection_kwargs,
    )


def create_redis(settings: Settings) -> "Redis":
    # A BlockingConnectionPool rather than redis-py's default pool. The default (redis-py 5)
    # holds one asyncio.Lock across each command's connection check, so N commands issued
    # together take turns, one event-loop turn each: under load a burst of cache misses waited
    # tens of milliseconds for the lock (cached-read p99 115 ms;
    # docs/decisions/0008-blocking-redis-pool.md). The blocking pool checks connections outside
    # its lock, and bounds how many this process opens.
    options: dict[str, Any] = {
        "max_connections": settings.redis_pool_max_size,
        "timeout": settings.redis_timeout_s,
        "socket_timeout": settings.redis_timeout_s,
        "socket_connect_timeout": settings.redis_timeout_s,
        "health_check_interval": 30,
        # A down Redis should cost one fast failure, not a loop of reconnects inside the request.
        "retry_on_timeout": False,
    }
    if settings.redis_sentinels:
        client: Redis = _sentinel(settings).master_for(
            settings.redis_sentinel_master,
            connection_pool_class=BlockingSentinelConnectionPool,
            **options,
        )
        return client
    pool = BlockingConnectionPool.from_url(settings.redis_url.get_secret_value(), **options)
    # from_pool: the client owns the pool, and aclose() disconnects it.
    return Redis.from_pool(pool)


def create_queue_client(
    settings: Settings,
    *,
    retry: Retry | None = None,
    retry_on_error: list[type[Exception]] | None = None,
) -> ArqRedis:
    """An ARQ client (it can enqueue) with the same timeouts; `retry` for one that rides out a
    lost connection (the worker's own), none for one that fails fast."""
    options: dict[str, Any] = {
        "socket_timeout": settings.redis_timeout_s,
        "socket_connect_timeout": settings.redis_timeout_s,
        "retry_on_timeout": False,
    }
    if retry is not None:
        options |= {"retry": retry, "retry_on_error": retry_on_error}
    if settings.redis_sentinels:
        # ARQ's own sentinel support (RedisSettings(sentinel=True)) passes neither timeouts nor
        # retries on to the connections, so the worker builds its client here.
        client: ArqRedis = _sentinel(settings).master_for(
            settings.redis_sentinel_master,
            redis_class=ArqRedis,
            connection_pool_class=_SentinelPool,
            **options,
        )
    else:
        client = ArqRedis.from_url(settings.redis_url.get_secret_value(), **options)
    client.default_queue_name = settings.queue_name
    return client
