"""`python -m bench.purge_cost [--rounds N] [--seconds S]`: what bounding the outbox costs the
order path.

One API process and one worker (its relay claiming every order's rows) on one Postgres
(durable commits), orders posted by wrk, the arms alternating within each round in an order
shuffled from round to round. The outbox holds `--old-rows` delivered rows past retention
throughout, as a table in production holds its retention window:

- `no_index`: without `ix_outbox_delivered_at`, the schema before the purge: what the index
  costs the claim, which writes it;
- `index`: today's schema, no purge running;
- `flat_out`: today's schema, the outbox purge (shop/jobs/retention.py) deleting due rows all
  through the arm with PURGE_PAUSE_FACTOR=0, batches back to back;
- `paced`: the same purge as it runs in the worker's cron, pausing after each batch
  (PURGE_PAUSE_FACTOR's default).

The purge arms' due rows are topped up before each arm; the worker's cron purges the outbox for
up to half the job timeout every 10 s, so these arms show the order path while a run goes on.

Prints a Markdown table of the medians over rounds (docs/decisions/0034-bounded-tables.md).
"""

import argparse
import asyncio
import random
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import asyncpg

from bench import load
from bench import repository as bench_repo
from bench.phases.common import say, start_worker
from bench.programs import ensure_wrk
from bench.seed import HOT_PRODUCTS, seed
from bench.stack import (
    PRODUCTION_POOL,
    PRODUCTION_SERVER,
    Child,
    Server,
    Stack,
    start_stack,
    tree_cpu_seconds,
)
from kit.settings import Settings
from shop.jobs import retention

ARMS = ("no_index", "index", "flat_out", "paced")
CONNECTIONS = 32
RETENTION_S = 7 * 24 * 3600
INDEX = "ix_outbox_delivered_at"
_CREATE_INDEX = (
    f"CREATE INDEX IF NOT EXISTS {INDEX} ON outbox (delivered_at) WHERE delivered_at IS NOT NULL"
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.purge_cost", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--old-rows", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    wrk = ensure_wrk()
    root = Path(tempfile.mkdtemp(prefix="bench-purge-cost-"))
    stack = start_stack(root, {})
    try:
        data = asyncio.run(seed(stack.postgres.url, 0, 100))
        api = stack.server("api", PRODUCTION_SERVER, "api.main:app", 1, PRODUCTION_POOL)
        # The worker's own cron purge would delete the arms' due rows whenever it ran: its
        # retention is beyond them, so that only the purge arms purge.
        worker = start_worker(stack, "worker", {"OUTBOX_RETENTION_S": str(100 * RETENTION_S)})
        retaining = Settings().model_copy(update={"outbox_retention_s": RETENTION_S})
        purges = {
            "flat_out": retaining.model_copy(update={"purge_pause_factor": 0.0}),
            "paced": retaining,
        }
        results: dict[str, list[load.LoadResult]] = {}
        worker_cpu: dict[str, list[float]] = {}
        purged: dict[str, list[int]] = {}
        scripts = root / "lua"
        scripts.mkdir()
        for round_no in range(args.rounds):
            order = list(ARMS)
            random.Random(round_no).shuffle(order)
            for arm in order:
                asyncio.run(_prepare(stack.postgres.url, data.client_id, arm, args.old_rows))
                script = scripts / f"{arm}-{round_no}.lua"
                tag = f"{arm.replace('_', '-')}{round_no}"
                script.write_text(load.place_orders(data.api_key, tag, HOT_PRODUCTS, True))
                result, cpu, deleted = _measure(
                    wrk, api, worker, stack, script, args.seconds, purge=purges.get(arm)
                )
                results.setdefault(arm, []).append(result)
                worker_cpu.setdefault(arm, []).append(cpu)
                purged.setdefault(arm, []).append(deleted)
                say(
                    f"round {round_no + 1} {arm:9s} {result.rps:7.0f} req/s"
                    f"  p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:7.2f} ms"
                    f"  errors {result.errors}  purged {deleted}"
                )
        print(_table(results, worker_cpu, purged))
    finally:
        stack.close()
        shutil.rmtree(root, ignore_errors=True)
    return 0


async def _prepare(dsn: str, client_id: int, arm: str, old_rows: int) -> None:
    """The arm's schema, `old_rows` delivered rows past retention (no order: always due), and
    the worker done with the orders of the arm before."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        if arm == "no_index":
            await conn.execute(f"DROP INDEX IF EXISTS {INDEX}")
        else:
            await conn.execute(_CREATE_INDEX)
        due: int = await conn.fetchval(
            "SELECT count(*) FROM outbox WHERE delivered_at < now() - make_interval(secs => $1)",
            RETENTION_S,
        )
        if due < old_rows:
            await conn.execute(
                "INSERT INTO outbox (job_id, function, args, delivered_at, delivery_attempts)"
                " SELECT 'bench-old:' || gen_random_uuid(), 'send_confirmation', '[]'::jsonb,"
                "        now() - make_interval(secs => $2 + 3600) - n * interval '1 ms', 1"
                " FROM generate_series(1, $1) AS n",
                old_rows - due,
                RETENTION_S,
            )
        deadline = time.monotonic() + 300
        while await bench_repo.unfinished_orders(conn, client_id, 0):
            if time.monotonic() > deadline:
                raise TimeoutError("the worker did not finish the orders of the arm before")
            await asyncio.sleep(0.5)
        # Every arm starts on a vacuumed, analysed table.
        await conn.execute("VACUUM ANALYZE outbox")
    finally:
        await conn.close()


def _measure(
    wrk: str,
    api: Server,
    worker: Child,
    stack: Stack,
    script: Path,
    seconds: float,
    *,
    purge: Settings | None,
) -> tuple[load.LoadResult, float, int]:
    stop = threading.Event()
    deleted = [0]
    purger = None
    if purge is not None:
        settings = purge
        purger = threading.Thread(
            target=lambda: asyncio.run(_purge_until(stack.postgres.url, settings, stop, deleted)),
            daemon=True,
        )
    before = tree_cpu_seconds(worker.pid)
    if purger is not None:
        purger.start()
    try:
        result = load.run_wrk(
            wrk,
            api.url,
            script,
            seconds=seconds,
            connections=CONNECTIONS,
            server_pid=api.pid,
            postgres_pid=stack.postgres.pid or 0,
            redis_pid=stack.redis.pid or 0,
        )
    finally:
        stop.set()
        if purger is not None:
            purger.join()
    return result, (tree_cpu_seconds(worker.pid) - before) / result.seconds, deleted[0]


async def _purge_until(
    dsn: str, settings: Settings, stop: threading.Event, deleted: list[int]
) -> None:
    """The worker's outbox purge, run after run, until told to stop."""
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    try:
        while not stop.is_set():
            deleted[0] += await retention.purge_outbox(pool, settings, budget_s=0.5)
    finally:
        await pool.close()


def _table(
    results: dict[str, list[load.LoadResult]],
    worker_cpu: dict[str, list[float]],
    purged: dict[str, list[int]],
) -> str:
    lines = [
        "| arm | POST req/s | vs index | p50 ms | p99 ms | API CPU µs/order "
        "| worker CPU µs/order | Postgres CPU µs/order | rows purged/s | errors |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    base = statistics.median(r.rps for r in results["index"])
    for arm in ARMS:
        runs = results[arm]
        rps = statistics.median(r.rps for r in runs)

        rates = [n / r.seconds for n, r in zip(purged[arm], runs, strict=True)]
        lines.append(
            f"| {arm} | {rps:.0f} | {rps / base:.2f}x "
            f"| {statistics.median(r.p50_ms for r in runs):.2f} "
            f"| {statistics.median(r.p99_ms for r in runs):.2f} "
            f"| {_per_order([r.server_cpu for r in runs], runs):.0f} "
            f"| {_per_order(worker_cpu[arm], runs):.0f} "
            f"| {_per_order([r.postgres_cpu for r in runs], runs):.0f} "
            f"| {statistics.median(rates):.0f} "
            f"| {sum(r.errors for r in runs)} |"
        )
    return "\n".join(lines)


def _per_order(cores: list[float], runs: list[load.LoadResult]) -> float:
    """Microseconds of CPU per order posted: cores busy over orders a second, median over runs."""
    return statistics.median(c / r.rps * 1e6 for c, r in zip(cores, runs, strict=True))


if __name__ == "__main__":
    raise SystemExit(main())
