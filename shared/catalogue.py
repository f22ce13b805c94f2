"""The product catalogue and its Redis cache.

Invalidation without races: every cache entry is stored together with the generation token that
was current when its reader *started*. A write, after it commits, replaces the generation token
with a fresh random one. A reader that loaded the old row from Postgres before the commit can
still store its value, but it is stored under the old token and is never served: a read after a
write never shows the old value. Tokens are random rather than counters so that a token lost to
a Redis restart can never come back and revalidate an old entry.
"""

import secrets
from collections.abc import Sequence

import asyncpg
import structlog
from redis.asyncio import Redis

from shared.db import connection
from shared.errors import Conflict, NotFound
from shared.metrics import CACHE_LOOKUPS
from shared.pagination import encode_cursor
from shared.redis import REDIS_UNAVAILABLE_ERRORS
from shared.repositories import products as products_repo
from shared.schemas import ProductCreate, ProductPage, ProductPublic, ProductUpdate
from shared.settings import Settings

log = structlog.get_logger(__name__)

_SEPARATOR = b"|"
_NO_GENERATION = b"-"
_LIST_GENERATION_KEY = "catalogue:list:gen"


def _product_key(product_id: int) -> str:
    return f"catalogue:product:{product_id}"


def _product_generation_key(product_id: int) -> str:
    return f"catalogue:product:{product_id}:gen"


def _page_key(after_id: int, limit: int) -> str:
    return f"catalogue:list:{after_id}:{limit}"


class ProductCache:
    def __init__(self, redis: Redis, ttl_s: int) -> None:
        self._redis = redis
        self._ttl_s = ttl_s
        self.hits = 0
        self.misses = 0

    async def lookup(self, key: str, generation_key: str) -> tuple[bytes | None, bytes | None]:
        """(cached payload or None, the generation to fill with); (None, None) if Redis is down."""
        try:
            generation, entry = await self._redis.mget(generation_key, key)
        except REDIS_UNAVAILABLE_ERRORS as exc:
            log.warning("cache_unavailable", error=repr(exc))
            return None, None
        generation = generation or _NO_GENERATION
        if entry is not None:
            entry_generation, _, payload = entry.partition(_SEPARATOR)
            if entry_generation == generation:
                self.hits += 1
                CACHE_LOOKUPS.labels("hit").inc()
                return payload, generation
        self.misses += 1
        CACHE_LOOKUPS.labels("miss").inc()
        return None, generation

    async def fill(self, key: str, generation: bytes, payload: bytes) -> None:
        try:
            await self._redis.set(key, generation + _SEPARATOR + payload, ex=self._ttl_s)
        except REDIS_UNAVAILABLE_ERRORS as exc:
            log.warning("cache_unavailable", error=repr(exc))

    async def invalidate_products(self, product_ids: Sequence[int]) -> None:
        """Call after the write has committed. If Redis is unreachable the entries expire by TTL."""
        tokens = {_product_generation_key(pid): secrets.token_hex(8) for pid in product_ids}
        tokens[_LIST_GENERATION_KEY] = secrets.token_hex(8)
        try:
            await self._redis.mset(tokens)
        except REDIS_UNAVAILABLE_ERRORS as exc:
            log.warning("cache_invalidation_failed", product_ids=list(product_ids), error=repr(exc))


async def get_product_json(
    pool: asyncpg.Pool, settings: Settings, cache: ProductCache, product_id: int
) -> bytes:
    """The product as JSON bytes, from the cache when it holds the current version."""
    key = _product_key(product_id)
    payload, generation = await cache.lookup(key, _product_generation_key(product_id))
    if payload is not None:
        return payload
    async with connection(pool, settings.db_pool_acquire_timeout_s) as conn:
        product = await products_repo.get(conn, product_id)
    if product is None:
        raise NotFound(f"There is no product {product_id}.")
    payload = product.model_dump_json().encode()
    if generation is not None:
        await cache.fill(key, generation, payload)
    return payload


async def list_products_json(
    pool: asyncpg.Pool, settings: Settings, cache: ProductCache, after_id: int, limit: int
) -> bytes:
    key = _page_key(after_id, limit)
    payload, generation = await cache.lookup(key, _LIST_GENERATION_KEY)
    if payload is not None:
        return payload
    async with connection(pool, settings.db_pool_acquire_timeout_s) as conn:
        products = await products_repo.list_after(conn, after_id, limit + 1)
    page = products[:limit]
    next_cursor = encode_cursor(page[-1].id) if len(products) > limit else None
    payload = ProductPage(data=page, next_cursor=next_cursor).model_dump_json().encode()
    if generation is not None:
        await cache.fill(key, generation, payload)
    return payload


async def create_product(
    pool: asyncpg.Pool, settings: Settings, cache: ProductCache, product: ProductCreate
) -> ProductPublic:
    async with connection(pool, settings.db_pool_acquire_timeout_s) as conn:
        created = await products_repo.insert(conn, product)
    if created is None:
        raise Conflict(f"A product with SKU {product.sku!r} exists already.")
    await cache.invalidate_products([created.id])
    return created


async def update_product(
    pool: asyncpg.Pool,
    settings: Settings,
    cache: ProductCache,
    product_id: int,
    changes: ProductUpdate,
) -> ProductPublic:
    async with connection(pool, settings.db_pool_acquire_timeout_s) as conn:
        updated = await products_repo.update(
            conn, product_id, changes.model_dump(exclude_unset=True)
        )
    if updated is None:
        raise NotFound(f"There is no product {product_id}.")
    await cache.invalidate_products([product_id])
    return updated
