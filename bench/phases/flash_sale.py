"""The flash sale: everything at once on the same few products, as a shop under high traffic.

One API process (the production Granian command) and one worker (`arq worker.Settings`) on the
run's Postgres and Redis, with Postfix's smtp-sink as the mail server (a C program whose CPU
stays small beside the worker's). 50 products, the first 5 on sale with plenty of stock.

- Before the sale: reads only, of the 5 and of the other 45 (24 connections each).
- The sale: for flash_sale_s, three wrk processes at once: 32 connections place one-line orders
  for the 5, 24 read the 5, 24 read the other 45. Orders are followed through the tables
  (orders.created_at, confirmed_at, confirmation_sent_at) until the last is emailed.
- A sale of one single product, against one transaction per order on one row (pgbench).
- Open loop: orders at half the rate the sale confirmed and emailed, from POST to email.
- References, with no worker running: POST /v1/orders alone, and pgbench on Postgres alone with
  the product's statements per order and with a lean write of the same rows.

Figures come from HTTP (wrk), the tables and process CPU only, never from the worker's
internals, so that they keep their meaning however the pipeline is built.
"""

import asyncio
import math
import secrets
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import asyncpg

from bench import load, pgbench
from bench import repository as bench_repo
from bench import seed as seeding
from bench.open_loop import feed_orders
from bench.options import Options
from bench.phases.common import say, settle
from bench.phases.pipeline import (
    PipelineStack,
    drain,
    last_order_id,
    order_times,
    per_second,
    percentile,
    sink_count,
    wrk_figures,
)
from bench.programs import pgbench as find_pgbench
from bench.repository import OrderTimes
from bench.results import Results
from bench.stack import Stack
from shop.clients.service import create_client

PRODUCTS = 50
HOT = 5
OTHER_STOCK = 1_000
HOT_READ_CONNECTIONS = 24
OTHER_READ_CONNECTIONS = 24
REFERENCE_CLIENTS = 64
# How long the pipeline may take to work through what a sale left, before the phase gives up.
DRAIN_LIMIT_S = 600.0
# The goals, which the report holds the figures against.
GOALS = {
    "hot_reads_vs_other_reads": 0.9,
    "emailed_vs_accepted": 0.9,
    "accepted_vs_post_alone": 0.5,
    "sale_order_p99_ms": 100.0,
    "single_product_vs_one_per_transaction": 5.0,
    "product_statements_vs_lean_write": 0.6,
    "open_loop_p99_ms": 1000.0,
}


@dataclass(frozen=True)
class FlashSeed:
    api_key: str
    client_id: int
    first: int  # products first .. first + PRODUCTS - 1; the first HOT are on sale
    single: int  # the product of the one-product sale
    row: int  # the product the one-transaction-per-order baseline takes stock from


async def _seed(dsn: str) -> FlashSeed:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        async with conn.transaction():
            new = await create_client(conn, "flash-sale", is_admin=False)
            hot = await seeding.products(
                conn, "FLASH-SALE", "Flash sale product", HOT, stock=seeding.PLENTY
            )
            other = await seeding.products(
                conn, "FLASH-CATALOGUE", "Catalogue product", PRODUCTS - HOT, stock=OTHER_STOCK
            )
            single = await seeding.products(
                conn, "FLASH-SINGLE", "Single product on sale", 1, stock=seeding.PLENTY
            )
            row = await seeding.products(
                conn, "FLASH-ROW", "Row transaction product", 1, stock=seeding.PLENTY
            )
    finally:
        await conn.close()
    assert other[0] == hot[-1] + 1, "the sale's products must have consecutive ids"
    return FlashSeed(new.api_key, new.client.id, hot[0], single[0], row[0])


class _FlashStack(PipelineStack):
    def __init__(self, stack: Stack, seed: FlashSeed) -> None:
        super().__init__(stack, "flash")
        self.seed = seed

    def hot_reads(self) -> str:
        return load.cycling_ids(
            "/v1/products/", self.seed.first, HOT, self.seed.api_key, per_second=True
        )

    def other_reads(self) -> str:
        return load.cycling_ids(
            "/v1/products/",
            self.seed.first + HOT,
            PRODUCTS - HOT,
            self.seed.api_key,
            per_second=True,
        )

    def orders(self, tag: str, first: int, count: int) -> str:
        return load.one_line_orders(self.seed.api_key, tag, first, count)


def _series(
    orders: list[OrderTimes], start: float, reads: dict[str, dict[int, int]]
) -> list[dict[str, int]]:
    """Per wall-clock second from the sale's start to its last email: orders accepted,
    confirmed and emailed in that second, the backlog (accepted but not yet emailed) at its
    end, and reads of each kind."""
    accepted = Counter(int(o.created) for o in orders)
    confirmed = Counter(int(o.confirmed) for o in orders if o.confirmed is not None)
    emailed = Counter(int(o.emailed) for o in orders if o.emailed is not None)
    last = max(
        [int(start), *accepted, *confirmed, *emailed, *(s for r in reads.values() for s in r)]
    )
    series, backlog = [], 0
    for second in range(int(start), last + 1):
        backlog += accepted[second] - emailed[second]
        series.append(
            {
                "t_s": second - int(start),
                "accepted": accepted[second],
                "confirmed": confirmed[second],
                "emailed": emailed[second],
                "backlog": backlog,
                **{f"{name}_reads": counts.get(second, 0) for name, counts in reads.items()},
            }
        )
    return series


def _before(fs: _FlashStack, seconds: float) -> dict[str, Any]:
    hot = fs.wrk_start("before-hot", fs.hot_reads(), seconds, HOT_READ_CONNECTIONS)
    other = fs.wrk_start("before-other", fs.other_reads(), seconds, OTHER_READ_CONNECTIONS)
    return {"hot_reads": wrk_figures(hot.finish()), "other_reads": wrk_figures(other.finish())}


def _sale(fs: _FlashStack, options: Options) -> dict[str, Any]:
    stack, seed = fs.stack, fs.seed
    dsn = stack.postgres.url
    after_id = asyncio.run(last_order_id(dsn))
    cpu_before = fs.cpu()
    start = time.time()
    seconds = options.flash_sale_s
    orders = fs.wrk_start(
        "sale-orders",
        fs.orders("sale", seed.first, HOT),
        seconds,
        options.flash_order_connections,
    )
    hot = fs.wrk_start("sale-hot", fs.hot_reads(), seconds, HOT_READ_CONNECTIONS)
    other = fs.wrk_start("sale-other", fs.other_reads(), seconds, OTHER_READ_CONNECTIONS)
    runs = {"orders": orders.finish(), "hot_reads": hot.finish(), "other_reads": other.finish()}
    end = time.time()
    cpu_sale = fs.cpu()
    asyncio.run(drain(dsn, seed.client_id, after_id, DRAIN_LIMIT_S))
    cpu_drained = fs.cpu()
    say(f"flash sale: every order emailed {time.time() - end:.1f} s after the sale ended")
    times = asyncio.run(order_times(dsn, seed.client_id, after_id))
    emailed = [o.emailed for o in times if o.emailed is not None]
    confirmed = [o.confirmed for o in times if o.confirmed is not None]
    last_email = max(emailed, default=math.nan)
    sale_s = runs["orders"].seconds
    accepted_per_s = per_second(len(times), sale_s)
    emailed_per_s = per_second(len(emailed), last_email - start)
    wrk_cpu = {name: round(run.cpu_s, 2) for name, run in runs.items()}
    to_email = [(o.emailed - o.created) * 1000 for o in times if o.emailed is not None]
    figures: dict[str, Any] = {
        **{name: wrk_figures(run) for name, run in runs.items()},
        "seconds": round(sale_s, 2),
        "accepted": len(times),
        "confirmed": len(confirmed),
        "emailed": len(emailed),
        "rejected": sum(o.status == "rejected" for o in times),
        "accepted_per_s": round(accepted_per_s, 1),
        "emailed_per_s": round(emailed_per_s, 1),
        "last_email_after_end_s": round(last_email - end, 2),
        # From the order's created_at (its first statement) to its confirmation_sent_at.
        "accepted_to_emailed_ms": {f"p{p}": round(percentile(to_email, p), 1) for p in (50, 99)},
        "cpu_s_during_sale": {
            **{k: round(cpu_sale[k] - cpu_before[k], 2) for k in cpu_before},
            **{f"wrk_{k}": v for k, v in wrk_cpu.items()},
        },
        "cpu_s_sale_to_drained": {
            **{k: round(cpu_drained[k] - cpu_before[k], 2) for k in cpu_before},
            **{f"wrk_{k}": v for k, v in wrk_cpu.items()},
        },
        "sink_messages": sink_count(fs.sink),
        "series": _series(
            times,
            start,
            {
                "hot": runs["hot_reads"].per_second or {},
                "other": runs["other_reads"].per_second or {},
            },
        ),
    }
    return figures


def _single_product(fs: _FlashStack, options: Options, batch_size: int | None) -> dict[str, Any]:
    """A sale of one product: orders for the same row are placed with no worker running, then a
    worker confirms them, one transaction a batch (`batch_size` None: the shipped JOB_BATCH_SIZE)
    or, with a batch size of 1, one transaction an order; how fast it confirms them."""
    stack, seed = fs.stack, fs.seed
    dsn = stack.postgres.url
    fs.stop_worker()
    after_id = asyncio.run(last_order_id(dsn))
    run = fs.wrk_start(
        "single-orders",
        fs.orders(f"single-{batch_size}", seed.single, 1),
        options.flash_reference_s,
        options.flash_order_connections,
    ).finish()
    start = time.time()
    fs.start_worker({} if batch_size is None else {"JOB_BATCH_SIZE": str(batch_size)})
    asyncio.run(drain(dsn, seed.client_id, after_id, DRAIN_LIMIT_S))
    times = asyncio.run(order_times(dsn, seed.client_id, after_id))
    confirmed = [o.confirmed for o in times if o.confirmed is not None]
    fs.stop_worker()
    return {
        "orders": wrk_figures(run),
        "job_batch_size": batch_size,
        "accepted": len(times),
        "confirmed": len(confirmed),
        "confirmed_per_s": round(
            per_second(len(confirmed), max(confirmed, default=start) - start), 1
        ),
    }


def _open_loop(fs: _FlashStack, rate: float, seconds: float) -> dict[str, Any]:
    """Orders at a fixed rate; the time from each POST to its order's confirmation_sent_at."""
    stack, seed = fs.stack, fs.seed
    dsn = stack.postgres.url
    after_id = asyncio.run(last_order_id(dsn))
    counts: dict[str, int] = {}
    sent_at: dict[int, float] = {}

    def body(n: int) -> dict[str, Any]:
        return {
            "customer": {"email": f"open{n}@flash.example.com", "name": f"Open loop {n}"},
            "items": [{"product_id": seed.first + n % HOT, "quantity": 1}],
        }

    asyncio.run(feed_orders(fs.api.url, seed.api_key, rate, seconds, body, counts, sent_at))
    asyncio.run(drain(dsn, seed.client_id, after_id, DRAIN_LIMIT_S))
    times = asyncio.run(order_times(dsn, seed.client_id, after_id))
    latencies = [
        (o.emailed - sent_at[o.id]) * 1000
        for o in times
        if o.emailed is not None and o.id in sent_at
    ]
    return {
        "rate_per_s": round(rate, 1),
        "seconds": seconds,
        **counts,
        "emailed": len(latencies),
        "p50_ms": round(percentile(latencies, 50), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
        "max_ms": round(max(latencies, default=math.nan), 1),
    }


def _post_alone(fs: _FlashStack, seconds: float, connections: int) -> dict[str, Any]:
    """POST /v1/orders with nothing else running: no worker, no reads."""
    assert fs.worker is None
    cpu_before = fs.cpu()
    run = fs.wrk_start(
        "post-alone", fs.orders("alone", fs.seed.first, HOT), seconds, connections
    ).finish()
    cpu_after = fs.cpu()
    return {
        **wrk_figures(run),
        "cpu_s": {k: round(cpu_after[k] - cpu_before[k], 2) for k in cpu_before},
    }


def _pgbench_references(fs: _FlashStack, seconds: float, row_clients: int) -> dict[str, Any]:
    """Postgres alone: (a) the product's statements per order, (b) a lean write of the same
    rows, both on REFERENCE_CLIENTS connections; and one transaction per order on one row, on as
    many connections as the sale places orders from."""
    stack, seed = fs.stack, fs.seed
    dsn = stack.postgres.url
    program = find_pgbench(stack.postgres.bindir)

    async def scratch(create: bool) -> None:
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            if create:
                await bench_repo.create_scratch_tables(conn)
            else:
                await bench_repo.drop_scratch_tables(conn)
        finally:
            await conn.close()

    def script(name: str, text: str) -> Path:
        path = stack.root / f"pgbench-{name}.sql"
        path.write_text(text)
        return path

    async def record() -> tuple[str, dict[str, str]]:
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            orders = [
                await pgbench.record_keyed_order(
                    conn, seed.client_id, products, f"pgbench-sample-{n}-{secrets.token_hex(4)}"
                )
                for n in (1, 2)
            ]
        finally:
            await conn.close()
        return pgbench.product_order_script(*orders)

    products = (seed.first, seed.first + 1)
    product_script, product_constants = asyncio.run(record())
    postgres_pid = stack.postgres.pid or 0
    asyncio.run(scratch(True))
    try:
        runs = {
            "product_statements": pgbench.run(
                program,
                dsn,
                script("product", product_script),
                clients=REFERENCE_CLIENTS,
                seconds=seconds,
                variables=product_constants,
                postgres_pid=postgres_pid,
            ),
            "lean_write": pgbench.run(
                program,
                dsn,
                script("lean", pgbench.lean_order_script()),
                clients=REFERENCE_CLIENTS,
                seconds=seconds,
                variables=pgbench.lean_order_variables(seed.client_id, products),
                postgres_pid=postgres_pid,
            ),
            "row_transactions": pgbench.run(
                program,
                dsn,
                script("row", pgbench.row_order_script()),
                clients=row_clients,
                seconds=seconds,
                variables={"product": str(seed.row)},
                postgres_pid=postgres_pid,
            ),
        }
    finally:
        asyncio.run(scratch(False))
    return {name: asdict(result) for name, result in runs.items()}


def _ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b and not math.isnan(a) and not math.isnan(b) else math.nan


def run(stack: Stack, options: Options, results: Results) -> None:
    # Only this phase's processes run: no other worker takes its jobs, and no idle server of an
    # earlier phase takes CPU (each API process hears the worker's cache invalidations).
    stack.stop_children()
    asyncio.run(settle(stack))
    seed = asyncio.run(_seed(stack.postgres.url))
    fs = _FlashStack(stack, seed)
    figures: dict[str, Any] = {
        "goals": GOALS,
        "order_connections": options.flash_order_connections,
    }
    fs.start_worker()
    say(f"flash sale: before the sale, {options.flash_before_s:g} s of reads")
    figures["before"] = _before(fs, options.flash_before_s)
    say(f"flash sale: {options.flash_sale_s:g} s of orders and reads at once")
    figures["sale"] = _sale(fs, options)
    say(f"flash sale: one product on sale, {options.flash_reference_s:g} s, batched and not")
    figures["single_product_one_per_transaction"] = _single_product(fs, options, 1)
    figures["single_product"] = _single_product(fs, options, None)
    fs.start_worker()
    capacity = figures["sale"]["emailed_per_s"]
    if capacity > 0:
        say(f"flash sale: open loop at {capacity / 2:.0f} orders/s")
        figures["open_loop"] = _open_loop(fs, capacity / 2, options.flash_reference_s)
    fs.stop_worker()
    say("flash sale: references (no worker): POST /v1/orders alone, pgbench")
    connections = options.flash_order_connections
    figures["post_alone"] = _post_alone(fs, options.flash_reference_s, connections)
    figures["pgbench"] = _pgbench_references(fs, options.flash_reference_s, connections)
    # The references left orders pending with no worker to take them.
    asyncio.run(settle(stack))
    fs.api.stop()

    during, before = figures["sale"], figures["before"]
    pg = figures["pgbench"]
    figures["ratios"] = {
        "hot_reads_vs_other_reads": _ratio(
            during["hot_reads"]["rps"], during["other_reads"]["rps"]
        ),
        "hot_reads_vs_other_reads_before": _ratio(
            before["hot_reads"]["rps"], before["other_reads"]["rps"]
        ),
        "emailed_vs_accepted": _ratio(during["emailed_per_s"], during["accepted_per_s"]),
        "accepted_vs_post_alone": _ratio(during["accepted_per_s"], figures["post_alone"]["rps"]),
        "single_product_vs_one_per_transaction": _ratio(
            figures["single_product"]["confirmed_per_s"],
            figures["single_product_one_per_transaction"]["confirmed_per_s"],
        ),
        "single_product_vs_row_transactions": _ratio(
            figures["single_product"]["confirmed_per_s"], pg["row_transactions"]["tps"]
        ),
        "product_statements_vs_lean_write": _ratio(
            pg["product_statements"]["tps"], pg["lean_write"]["tps"]
        ),
    }
    results.flash_sale = figures
    say(f"flash sale: ratios {figures['ratios']}")
