"""The outbox stays bounded: orders flow at a steady rate while the worker's cron purges rows
delivered more than a short OUTBOX_RETENTION_S ago, and the table and the relay's claim are
sampled all along (docs/decisions/0034-bounded-tables.md).

Optional and short: `python -m bench --only retention [--retention-seconds S]`.
"""

import asyncio
import json
import statistics
import threading
import time
from datetime import datetime
from typing import Any

import asyncpg

from bench import repository as bench_repo
from bench.open_loop import feed_orders
from bench.options import Options
from bench.phases.common import say, settle, start_worker
from bench.results import Results
from bench.seed import HOT_PRODUCTS, Seed
from bench.stack import PRODUCTION_POOL, PRODUCTION_SERVER, Child, Stack
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


async def _sample(url: str, client_id: int, t_s: float) -> dict[str, float]:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        size = await bench_repo.outbox_size(conn)
        # Their rows stay whatever their age: a worker that falls behind keeps the outbox longer.
        unfinished = await bench_repo.unfinished_orders(conn, client_id, 0)
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
        "unfinished_orders": unfinished,
    }


def _purge_runs(worker: Child, started_at: float) -> list[dict[str, float]]:
    """Each `outbox_purged` line of the worker's log: when (seconds into the soak), how many."""
    runs = []
    for line in worker.log_path.read_text(errors="replace").splitlines():
        if '"outbox_purged"' not in line:
            continue
        entry = json.loads(line)
        at = datetime.fromisoformat(entry["timestamp"]).timestamp()
        runs.append({"t_s": round(at - started_at, 1), "purged": entry["purged"]})
    return runs


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
    started, started_at = time.monotonic(), time.time()
    feeder.start()
    samples = []
    while feeder.is_alive():
        feeder.join(timeout=SAMPLE_EVERY_S)
        t_s = time.monotonic() - started
        samples.append(asyncio.run(_sample(stack.postgres.url, seed.client_id, t_s)))
        s = samples[-1]
        say(
            f"  t {s['t_s']:6.1f} s  outbox {s['rows']:6d} rows ({s['pending']} pending,"
            f" {s['unfinished_orders']} orders unfinished)  {s['total_kib']:6d} KiB"
            f"  dead {s['dead_rows']:6d}  claim {s['claim_ms']:.3f} ms"
        )
    purges = _purge_runs(worker, started_at)
    for run in purges:
        say(f"  purge at {run['t_s']:6.1f} s: {run['purged']} rows")
    worker.stop()
    api.stop()
    results.retention = {
        "seconds": seconds,
        "retention_s": RETENTION_S,
        "order_rate_per_s": ORDER_RATE,
        "orders_placed": counts.get("placed", 0),
        "order_errors": counts.get("errors", 0),
        # Two rows a confirmed order, one a rejected one.
        "outbox_rows_at_most": 2 * counts.get("placed", 0),
        "purges": purges,
        "samples": samples,
    }
