"""The outbox stays bounded: orders flow at a steady rate while the worker's cron purges rows
delivered more than a short OUTBOX_RETENTION_S ago, and the table and the relay's claim are
sampled all along (docs/decisions/0033-bounded-tables.md).

Optional and short: `python -m bench --only retention [--retention-seconds S]`.
"""

import asyncio
import statistics
import threading
import time
from typing import Any

import asyncpg

from bench import repository as bench_repo
from bench.open_loop import feed_orders
from bench.options import Options
from bench.phases.common import say, settle, start_worker
from bench.results import Results
from bench.seed import HOT_PRODUCTS, Seed
from bench.stack import PRODUCTION_POOL, PRODUCTION_SERVER, Stack
from shop.jobs import outbox_repository as outbox_repo

RETENTION_S = 30
ORDER_RATE = 50.0
SAMPLE_EVERY_S = 10.0
# Claims probed per sample; the median is reported, so that one unlucky probe does not count.
CLAIM_PROBES = 5
CLAIM_BATCH = 200


def _order(seed: Seed) -> Any:
    def body(n: int) -> dict[str, Any]:
        return {
            "customer": {"email": f"keep{n}@soak.example.com", "name": f"Keep {n}"},
            "items": [{"product_id": seed.hot_first + n % HOT_PRODUCTS, "quantity": 1}],
        }

    return body


async def _sample(url: str, t_s: float) -> dict[str, float]:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        size = await bench_repo.outbox_size(conn)
        claims = [
            await outbox_repo.explain_analyze_claim(conn, CLAIM_BATCH) for _ in range(CLAIM_PROBES)
        ]
    finally:
        await conn.close()
    return {
        "t_s": round(t_s, 1),
        "rows": size.rows,
        "pending": size.pending,
        "total_kib": size.total_bytes // 1024,
        "dead_rows": size.dead_rows,
        "claim_ms": round(statistics.median(claims), 3),
    }


def run(stack: Stack, seed: Seed, options: Options, results: Results) -> None:
    asyncio.run(settle(stack))
    env = {"OUTBOX_RETENTION_S": str(RETENTION_S)}
    api = stack.server("api_retention", PRODUCTION_SERVER, "api.main:app", 1, PRODUCTION_POOL)
    worker = start_worker(stack, "worker_retention", env)
    seconds = options.retention_s
    say(f"retention: {ORDER_RATE:.0f} orders/s for {seconds:g} s, OUTBOX_RETENTION_S={RETENTION_S}")
    counts: dict[str, int] = {}
    feeder = threading.Thread(
        target=lambda: asyncio.run(
            feed_orders(api.url, seed.api_key, ORDER_RATE, seconds, _order(seed), counts)
        ),
        daemon=True,
    )
    started = time.monotonic()
    feeder.start()
    samples = []
    while feeder.is_alive():
        feeder.join(timeout=SAMPLE_EVERY_S)
        samples.append(asyncio.run(_sample(stack.postgres.url, time.monotonic() - started)))
        s = samples[-1]
        say(
            f"  t {s['t_s']:6.1f} s  outbox {s['rows']:6d} rows ({s['pending']} pending)"
            f"  {s['total_kib']:6d} KiB  dead {s['dead_rows']:6d}  claim {s['claim_ms']:.3f} ms"
        )
    purges = worker.log_path.read_text(errors="replace").count('"outbox_purged"')
    worker.stop()
    api.stop()
    results.retention = {
        "seconds": seconds,
        "retention_s": RETENTION_S,
        "order_rate_per_s": ORDER_RATE,
        "orders_placed": counts.get("placed", 0),
        "order_errors": counts.get("errors", 0),
        "outbox_rows_written": 2 * counts.get("placed", 0),
        "purge_runs": purges,
        "samples": samples,
    }
