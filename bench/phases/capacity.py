"""What one order costs each part of the system: the figures docs/capacity.md scales up.

One API process, one worker and smtp-sink (as in the flash sale), orders placed by wrk for
capacity_s over 100 products (no hot row), then drained until every order is emailed. From
process CPU, Postgres's WAL position and commit count, and Redis's command count before and
after, each divided by the orders that went all the way through.
"""

import asyncio
import time
from typing import Any

import asyncpg
import redis

from bench import load
from bench import repository as bench_repo
from bench import seed as seeding
from bench.options import Options
from bench.phases.common import say, settle
from bench.phases.pipeline import (
    PipelineStack,
    drain,
    fetch,
    last_order_id,
    order_times,
    per_second,
    wrk_figures,
)
from bench.results import Results
from bench.stack import Stack
from shop.clients.service import create_client

PRODUCTS = 100
DRAIN_LIMIT_S = 600.0


async def _seed(dsn: str) -> tuple[str, int, int]:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        async with conn.transaction():
            new = await create_client(conn, "capacity", is_admin=False)
            ids = await seeding.products(
                conn, "CAPACITY", "Capacity product", PRODUCTS, stock=seeding.PLENTY
            )
    finally:
        await conn.close()
    return new.api_key, new.client.id, ids[0]


def _redis_commands(url: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        stats = client.info("stats")
        assert isinstance(stats, dict)
        return int(stats["total_commands_processed"])
    finally:
        client.close()


def run(stack: Stack, options: Options, results: Results) -> None:
    stack.stop_children()
    asyncio.run(settle(stack))
    dsn = stack.postgres.url
    api_key, client_id, first = asyncio.run(_seed(dsn))
    ps = PipelineStack(stack, "capacity")
    ps.start_worker()
    after_id = asyncio.run(last_order_id(dsn))
    cpu_before, db_before = ps.cpu(), asyncio.run(fetch(dsn, bench_repo.database_counters))
    redis_before = _redis_commands(stack.redis.url)
    start = time.time()
    run = ps.wrk_start(
        "orders",
        load.one_line_orders(api_key, "capacity", first, PRODUCTS),
        options.capacity_s,
        options.flash_order_connections,
    ).finish()
    asyncio.run(drain(dsn, client_id, after_id, DRAIN_LIMIT_S))
    cpu_after, db_after = ps.cpu(), asyncio.run(fetch(dsn, bench_repo.database_counters))
    redis_after = _redis_commands(stack.redis.url)
    times = asyncio.run(order_times(dsn, client_id, after_id))
    ps.stop_worker()
    ps.api.stop()
    emailed = [o.emailed for o in times if o.emailed is not None]
    orders = len(emailed)
    per_order = max(1, orders)
    cpu = {k: cpu_after[k] - cpu_before[k] for k in cpu_before}
    figures: dict[str, Any] = {
        "orders": wrk_figures(run),
        "accepted": len(times),
        "emailed": orders,
        "processed_per_s": round(per_second(orders, max(emailed, default=start) - start), 1),
        "cpu_ms_per_order": {k: round(v * 1000 / per_order, 3) for k, v in cpu.items()},
        "wrk_cpu_ms_per_order": round(run.cpu_s * 1000 / per_order, 3),
        "wal_bytes_per_order": round((db_after.wal_bytes - db_before.wal_bytes) / per_order),
        "commits_per_order": round((db_after.commits - db_before.commits) / per_order, 3),
        "redis_commands_per_order": round((redis_after - redis_before) / per_order, 2),
    }
    results.capacity = figures
    say(f"capacity: {figures}")
