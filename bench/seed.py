"""The data every phase reads, written through the product's own services and repositories."""

import random
from dataclasses import dataclass

import asyncpg

from bench import repository as bench_repo
from shop.catalogue import repository as products_repo
from shop.catalogue.schemas import ProductCreate
from shop.clients.service import create_client
from shop.jobs.relay import NOTIFY_CHANNEL
from shop.orders import repository as orders_repo
from shop.orders.repository import PricedLine
from shop.orders.schemas import Customer
from shop.orders.service import total_cents

HOT_PRODUCTS = 100
PLENTY = 1_000_000_000


@dataclass(frozen=True)
class Seed:
    api_key: str
    client_id: int
    hot_first: int
    miss_first: int
    miss_count: int
    order_first: int
    order_count: int
    prices: dict[int, int]


async def seed(dsn: str, miss_count: int, order_count: int) -> Seed:
    """A client, HOT_PRODUCTS products read over and over, `miss_count` products read once each
    (every GET of one is a cache miss), and `order_count` orders to read."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        async with conn.transaction():
            new = await create_client(conn, "bench", is_admin=True)
            hot = [
                await products_repo.upsert_by_sku(
                    conn,
                    ProductCreate(
                        sku=f"BENCH-{i:04d}",
                        name=f"Bench product {i}",
                        price_cents=100 + i,
                        stock=PLENTY,
                    ),
                )
                for i in range(1, HOT_PRODUCTS + 1)
            ]
            miss = await products(conn, "MISS", "Rarely read product", miss_count, stock=0)
        prices = {p.id: p.price_cents for p in hot}
        order_ids = await insert_orders(conn, new.client.id, prices, order_count, "seed")
        # The seeded orders are for reading; their jobs are not part of any measurement.
        await bench_repo.mark_outbox_delivered(conn)
    finally:
        await conn.close()
    assert hot[0].id + HOT_PRODUCTS - 1 == hot[-1].id, "hot products must have consecutive ids"
    return Seed(
        api_key=new.api_key,
        client_id=new.client.id,
        hot_first=hot[0].id,
        miss_first=miss[0] if miss else 0,
        miss_count=miss_count,
        order_first=order_ids[0],
        order_count=len(order_ids),
        prices=prices,
    )


async def products(
    conn: asyncpg.Connection, prefix: str, name: str, count: int, *, stock: int, price: int = 1000
) -> list[int]:
    """`count` new products SKU'd prefix-1, prefix-2, ...; their ids, consecutive."""
    ids: list[int] = []
    for n in range(1, count + 1):
        product = await products_repo.insert(
            conn,
            ProductCreate(sku=f"{prefix}-{n}", name=f"{name} {n}", price_cents=price, stock=stock),
        )
        assert product is not None, f"SKU {prefix}-{n} exists already"
        ids.append(product.id)
    assert not ids or ids == list(range(ids[0], ids[0] + count)), "ids must be consecutive"
    return ids


async def insert_orders(
    conn: asyncpg.Connection, client_id: int, prices: dict[int, int], count: int, tag: str
) -> list[int]:
    """`count` orders with two lines each, in one transaction, through the product's insert."""
    ids = sorted(prices)
    order_ids = []
    async with conn.transaction():
        for n in range(count):
            a, b = random.sample(ids, 2)
            lines = [PricedLine(a, 1, prices[a]), PricedLine(b, 2, prices[b])]
            order_id, _ = await orders_repo.insert_with_reservation_job(
                conn,
                client_id=client_id,
                customer=Customer(email=f"e2e{n}@{tag}.example.com", name=f"Customer {n}"),
                lines=lines,
                total_cents=total_cents(lines),
                currency="EUR",
                request_id=None,
            )
            order_ids.append(order_id)
    # What the API's RelayWaker does after its commits: wake the workers' relays.
    await conn.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)
    return order_ids
