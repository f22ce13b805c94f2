"""The catalogue cache never serves a value that a committed write replaced, in any process."""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from redis.asyncio import Redis

from kit.settings import Settings
from shop.catalogue.cache import INVALIDATION_CHANNEL, ProductCache


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


# The in-process tier: each ProductCache below stands for one process, with its own connection.

KEY = "catalogue:product:1"
LOCAL_TTL_S = 5.0


@asynccontextmanager
async def process(settings: Settings, *, listening: bool = True) -> AsyncIterator[ProductCache]:
    redis = Redis.from_url(settings.redis_url.get_secret_value())
    cache = ProductCache(redis, ttl_s=60, local_ttl_s=LOCAL_TTL_S)
    listener = asyncio.create_task(cache.listen()) if listening else None
    try:
        if listening:
            async with asyncio.timeout(5):
                while not cache.local_enabled:
                    await asyncio.sleep(0.01)
        yield cache
    finally:
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
        await redis.aclose()


async def test_after_a_write_returns_no_other_process_serves_the_old_value(
    settings: Settings, redis_service: Any
) -> None:
    async with process(settings) as writer, process(settings) as reader:
        reader.local_put(KEY, b'{"stock": 5}', reader.ticket())
        assert reader.local_get(KEY) == b'{"stock": 5}'

        started = time.monotonic()
        await writer.invalidate_products([1])

        assert reader.local_get(KEY) is None
        # Dropped and acknowledged, not merely outlived: the writer did not wait out the TTL.
        assert time.monotonic() - started < LOCAL_TTL_S / 2


async def test_a_writer_without_a_listener_also_waits_for_every_process(
    settings: Settings, redis_service: Any
) -> None:
    async with process(settings, listening=False) as cli, process(settings) as reader:
        reader.local_put(KEY, b'{"stock": 5}', reader.ticket())

        await cli.invalidate_products([1])

        assert reader.local_get(KEY) is None


async def test_a_value_read_before_an_invalidation_is_not_kept_after_it(
    settings: Settings, redis_service: Any
) -> None:
    async with process(settings) as writer, process(settings) as reader:
        # The reader starts, and reads the old value from Redis...
        ticket = reader.ticket()
        # ...the write commits and every process acknowledges...
        await writer.invalidate_products([1])
        # ...then the slow reader tries to keep what it read.
        reader.local_put(KEY, b'{"stock": 5}', ticket)

        assert reader.local_get(KEY) is None


async def test_a_process_that_does_not_acknowledge_holds_the_writer_until_its_entries_expire(
    settings: Settings, redis_service: Any
) -> None:
    redis = Redis.from_url(settings.redis_url.get_secret_value())
    silent = redis.pubsub()
    await silent.subscribe(INVALIDATION_CHANNEL)  # receives, never acknowledges
    try:
        redis_writer = Redis.from_url(settings.redis_url.get_secret_value())
        writer = ProductCache(redis_writer, ttl_s=60, local_ttl_s=0.3)
        listener = asyncio.create_task(writer.listen())
        try:
            async with asyncio.timeout(5):
                while not writer.local_enabled:
                    await asyncio.sleep(0.01)
            started = time.monotonic()
            await writer.invalidate_products([1])
            assert time.monotonic() - started >= 0.3
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
            await redis_writer.aclose()
    finally:
        await silent.aclose()  # type: ignore[no-untyped-call]
        await redis.aclose()


async def test_a_process_without_its_subscription_serves_nothing_locally(
    settings: Settings, redis_service: Any
) -> None:
    async with process(settings, listening=False) as cut_off:
        cut_off.local_put(KEY, b'{"stock": 5}', cut_off.ticket())

        assert cut_off.local_get(KEY) is None


async def test_an_entry_read_late_in_its_life_is_reloaded_in_the_background_once(
    settings: Settings, redis_service: Any
) -> None:
    async with process(settings) as cache:
        reloads: list[str] = []

        async def reload(key: str) -> None:
            reloads.append(key)
            cache.local_put(key, b'{"stock": 4}', cache.ticket())

        cache.reload_ahead(reload)
        cache.local_put("catalogue:product:2", b'{"stock": 9}', cache.ticket())
        # An entry whose reader started 60 % of its life ago.
        _, epoch = cache.ticket()
        cache.local_put(KEY, b'{"stock": 5}', (time.monotonic() - 0.6 * LOCAL_TTL_S, epoch))
        # A page as old: pages are not reloaded ahead (every product write drops them all).
        page = "catalogue:list:0:50"
        cache.local_put(page, b'{"data": []}', (time.monotonic() - 0.6 * LOCAL_TTL_S, epoch))

        served = [
            cache.local_get(KEY),
            cache.local_get(KEY),
            cache.local_get("catalogue:product:2"),
            cache.local_get(page),
        ]
        await asyncio.sleep(0.05)

        # Still current, so still served while the one reload runs; the young entry is left be.
        assert served == [b'{"stock": 5}', b'{"stock": 5}', b'{"stock": 9}', b'{"data": []}']
        assert reloads == [KEY]
        assert cache.local_get(KEY) == b'{"stock": 4}'


async def test_stock_taken_refreshes_redis_at_once_and_other_processes_within_their_local_ttl(
    settings: Settings, redis_service: Any
) -> None:
    async with process(settings) as job, process(settings) as reader:
        generation_key = "catalogue:product:1:gen"
        _, generation = await reader.lookup(KEY, generation_key)
        assert generation is not None
        await reader.fill(KEY, generation, b'{"stock": 5}')
        # Read 0.5 s before the end of its life, so that it expires half a second from now.
        _, epoch = reader.ticket()
        reader.local_put(KEY, b'{"stock": 5}', (time.monotonic() - LOCAL_TTL_S + 0.5, epoch))

        await job.stock_taken([1])

        # The Redis tier at once...
        assert (await reader.lookup(KEY, generation_key))[0] is None
        # ...while the other process keeps serving its entry, so a product being sold stays
        # cached there, until the entry expires: the stock shown lags by at most the local TTL.
        await asyncio.sleep(0.05)
        assert reader.local_peek(KEY) == b'{"stock": 5}'
        await asyncio.sleep(0.5)
        assert reader.local_peek(KEY) is None
