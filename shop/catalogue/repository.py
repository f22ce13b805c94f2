from collections.abc import Mapping, Sequence

import asyncpg

from shop.catalogue.schemas import ProductCreate, ProductPublic

_COLUMNS = "id, sku, name, price_cents, currency, stock"
# The only columns a PATCH may set; the SET clause is built from this list, never from input.
_UPDATABLE = ("name", "price_cents", "stock")


async def get(conn: asyncpg.Connection, product_id: int) -> ProductPublic | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM products WHERE id = $1", product_id)
    return None if row is None else ProductPublic.model_validate(dict(row))


async def list_after(conn: asyncpg.Connection, after_id: int, limit: int) -> list[ProductPublic]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM products WHERE id > $1 ORDER BY id LIMIT $2", after_id, limit
    )
    return [ProductPublic.model_validate(dict(row)) for row in rows]


async def insert(conn: asyncpg.Connection, product: ProductCreate) -> ProductPublic | None:
    """The new product, or None when its SKU is taken."""
    row = await conn.fetchrow(
        "INSERT INTO products (sku, name, price_cents, currency, stock)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (sku) DO NOTHING"
        f" RETURNING {_COLUMNS}",
        product.sku,
        product.name,
        product.price_cents,
        product.currency,
        product.stock,
    )
    return None if row is None else ProductPublic.model_validate(dict(row))


async def upsert_by_sku(conn: asyncpg.Connection, product: ProductCreate) -> ProductPublic:
    row = await conn.fetchrow(
        "INSERT INTO products (sku, name, price_cents, currency, stock)"
        " VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (sku) DO UPDATE SET name = excluded.name,"
        " price_cents = excluded.price_cents, currency = excluded.currency,"
        " stock = excluded.stock, updated_at = now()"
        f" RETURNING {_COLUMNS}",
        product.sku,
        product.name,
        product.price_cents,
        product.currency,
        product.stock,
    )
    assert row is not None
    return ProductPublic.model_validate(dict(row))


async def update(
    conn: asyncpg.Connection, product_id: int, changes: Mapping[str, object]
) -> ProductPublic | None:
    columns = [column for column in _UPDATABLE if column in changes]
    assignments = ", ".join(f"{column} = ${n}" for n, column in enumerate(columns, start=2))
    row = await conn.fetchrow(
        f"UPDATE products SET {assignments}, updated_at = now() WHERE id = $1 RETURNING {_COLUMNS}",
        product_id,
        *(changes[column] for column in columns),
    )
    return None if row is None else ProductPublic.model_validate(dict(row))


async def prices(
    conn: asyncpg.Connection, product_ids: Sequence[int]
) -> dict[int, tuple[int, str]]:
    """Unit price and currency of each product that exists, by id."""
    rows = await conn.fetch(
        "SELECT id, price_cents, currency FROM products WHERE id = any($1::bigint[])",
        product_ids,
    )
    return {row["id"]: (row["price_cents"], row["currency"]) for row in rows}


async def lock_stock(conn: asyncpg.Connection, product_ids: Sequence[int]) -> dict[int, int]:
    """Stock by product id, with the rows locked in id order.

    Every transaction that changes stock locks in the same order, so two of them can never each
    hold a row the other waits for. NO KEY: orders being placed meanwhile check their lines'
    products with KEY SHARE locks, which a plain FOR UPDATE would make wait for this commit.
    """
    rows = await conn.fetch(
        "SELECT id, stock FROM products WHERE id = any($1::bigint[]) ORDER BY id FOR NO KEY UPDATE",
        product_ids,
    )
    return {row["id"]: row["stock"] for row in rows}


async def add_stock(
    conn: asyncpg.Connection, product_ids: Sequence[int], deltas: Sequence[int]
) -> None:
    """Adds each delta (negative to take stock) to its product; the CHECK keeps stock >= 0."""
    await conn.execute(
        "UPDATE products SET stock = products.stock + change.delta, updated_at = now()"
        " FROM unnest($1::bigint[], $2::int[]) AS change(product_id, delta)"
        " WHERE products.id = change.product_id",
        product_ids,
        deltas,
    )
