"""The product service: reads through the catalogue's cache, writes that invalidate it."""

from collections.abc import Awaitable, Callable

import asyncpg

from kit.db import connection
from kit.errors import Conflict, NotFound
from kit.pagination import encode_cursor
from kit.settings import Settings
from shop.catalogue import repository as products_repo
from shop.catalogue.cache import (
    LIST_GENERATION_KEY,
    PRODUCT_PREFIX,
    ProductCache,
    cached,
    load_through,
    page_key,
    product_generation_key,
    product_key,
)
from shop.catalogue.schemas import ProductCreate, ProductPage, ProductPublic, ProductUpdate


def local_product_json(cache: ProductCache, product_id: int) -> bytes | None:
    """The product as JSON bytes if this process's tier holds it; no hit counted, no I/O."""
    return cache.local_peek(product_key(product_id))


def _product_loader(
    pool: asyncpg.Pool, settings: Settings, product_id: int
) -> Callable[[], Awaitable[bytes]]:
    async def load() -> bytes:
        async with connection(pool, settings.db_pool_acquire_timeout_s) as conn:
            product = await products_repo.get(conn, product_id)
        if product is None:
            raise NotFound(f"There is no product {product_id}.")
        return product.model_dump_json().encode()

    return load


async def get_product_json(
    pool: asyncpg.Pool, settings: Settings, cache: ProductCache, product_id: int
) -> bytes:
    """The product as JSON bytes, from the cache when it holds the current version."""
    return await cached(
        cache,
        product_key(product_id),
        product_generation_key(product_id),
        _product_loader(pool, settings, product_id),
    )


def reload_products_ahead(pool: asyncpg.Pool, settings: Settings, cache: ProductCache) -> None:
    """Keeps products that are read all the time in this process's tier (see ProductCache)."""

    async def reload(key: str) -> None:
        if not key.startswith(PRODUCT_PREFIX):
            return
        product_id = int(key.removeprefix(PRODUCT_PREFIX))
        await load_through(
            cache,
            key,
            product_generation_key(product_id),
            _product_loader(pool, settings, product_id),
        )

    cache.reload_ahead(reload)


async def list_products_json(
    pool: asyncpg.Pool, settings: Settings, cache: ProductCache, after_id: int, limit: int
) -> bytes:
    async def load() -> bytes:
        async with connection(pool, settings.db_pool_acquire_timeout_s) as conn:
            products = await products_repo.list_after(conn, after_id, limit + 1)
        page = products[:limit]
        next_cursor = encode_cursor(page[-1].id) if len(products) > limit else None
        return ProductPage(data=page, next_cursor=next_cursor).model_dump_json().encode()

    return await cached(cache, page_key(after_id, limit), LIST_GENERATION_KEY, load)


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
