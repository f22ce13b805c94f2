"""The generation protocol that keeps a slow reader from re-caching a value a write replaced."""

from typing import Any

from redis.asyncio import Redis

from shared.catalogue import ProductCache
from shared.settings import Settings


async def test_a_value_read_before_a_write_is_never_served_after_it(
    settings: Settings, redis_service: Any
) -> None:
    redis = Redis.from_url(settings.redis_url.get_secret_value())
    cache = ProductCache(redis, ttl_s=60)
    key, generation_key = "catalogue:product:1", "catalogue:product:1:gen"
    try:
        # A reader misses and goes to Postgres, reading the old row...
        payload, generation = await cache.lookup(key, generation_key)
        assert payload is None
        assert generation is not None
        # ...meanwhile a writer commits and invalidates...
        await cache.invalidate_products([1])
        # ...then the slow reader stores what it read.
        await cache.fill(key, generation, b'{"price_cents": 100}')

        stale, fresh_generation = await cache.lookup(key, generation_key)
        assert stale is None
        assert fresh_generation != generation

        await cache.fill(key, fresh_generation, b'{"price_cents": 200}')
        assert (await cache.lookup(key, generation_key))[0] == b'{"price_cents": 200}'
    finally:
        await redis.aclose()
