"""The pipeline with and without batch jobs, side by side: `python -m bench.pipeline_batching`.

Starts the services the way bench.stack does (Postgres with durable commits, Redis, the mail
sink), one API process on this tree's code, and one worker at a time: either this tree's
(batch jobs) or the baseline's, a copy of another revision (`--baseline`, by default where this
branch left main: one job and one transaction per order) made with `git archive` and run from
its own directory. Rounds alternate between the two, so that whatever else the machine is doing
falls on both alike. Two measurements:

- one product: `--orders` orders for a single product are committed at once (one transaction,
  as a burst of requests would leave them), and the clock runs from that commit until the last
  of them is confirmed (reserved), then until its email is in the sink;
- flash sale: wrk posts orders over 32 connections for `--sale-seconds`, each for two of 5
  products; from the sale's first request to the last confirmation email received, how many
  orders per second were accepted, and how many confirmed and emailed.

Prints each round and the medians, and writes them as JSON to the run directory. Not a test:
the figures depend on the machine and on whatever else runs on it.
"""

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from bench import load
from bench.stack import BIN, Child, Stack, granian_argv, start_stack, tree_cpu_seconds
from devstack.project import REPO_ROOT
from shop.catalogue import repository as products_repo
from shop.catalogue.schemas import ProductCreate
from shop.clients.service import create_client
from shop.orders import repository as orders_repo
from shop.orders.repository import PricedLine
from shop.orders.schemas import Customer

SALE_PRODUCTS = 5
SALE_CONNECTIONS = 32
API_ENV = {"DB_POOL_MIN_SIZE": "4", "DB_POOL_MAX_SIZE": "10"}
BATCHED = "batched"
BASELINE = "baseline"


def _say(message: str) -> None:
    print(f"pipeline_batching: {message}", file=sys.stderr, flush=True)


@dataclass
class Round:
    variant: str
    orders: int
    confirmed_per_s: float = 0.0
    emailed_per_s: float = 0.0
    accepted_per_s: float = 0.0
    last_email_after_sale_s: float = 0.0
    # CPU seconds per order of each process tree, from the start until the last email.
    cpu_ms_per_order: dict[str, float] = field(default_factory=dict)
    load_average: float = field(default_factory=lambda: os.getloadavg()[0])


def _baseline_tree(root: Path, revision: str) -> Path:
    """`revision`'s files in a directory of their own (untracked files are not in it)."""
    tree = root / "baseline"
    tree.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "archive", revision],
        capture_output=True,
        check=True,
    )
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree


def _worker(stack: Stack, variant: str, baseline: Path, env: dict[str, str]) -> Child:
    """One worker process; the baseline's imports resolve to its tree (PYTHONPATH comes before
    this tree's editable install, and arq appends the working directory after both)."""
    extra = dict(env)
    if variant == BASELINE:
        extra["PYTHONPATH"] = str(baseline)
    child = Child(
        name=f"worker-{variant}-{time.monotonic_ns()}",
        argv=[str(BIN / "arq"), "worker.Settings"],
        log_path=stack.root / f"worker-{variant}.log",
        env={**stack.env, **extra},
    )
    stack.children.append(child)
    child.start()
    deadline = time.monotonic() + 60
    while "worker_started" not in child.log_path.read_text(errors="replace"):
        child.check()
        if time.monotonic() > deadline:
            raise RuntimeError(f"the {variant} worker did not start")
        time.sleep(0.05)
    return child


async def _seed(dsn: str) -> tuple[str, int, list[int], dict[int, int]]:
    """The sale's products first, so that they are ids 1..5 as the wrk script expects; then the
    single product; a client key."""
    conn = await asyncpg.connect(dsn)
    try:
        products = [
            await products_repo.upsert_by_sku(
                conn,
                ProductCreate(
                    sku=f"SALE-{n}", name=f"Sale {n}", price_cents=500, stock=1_000_000_000
                ),
            )
            for n in range(1, SALE_PRODUCTS + 2)
        ]
        client = await create_client(conn, "pipeline-batching", is_admin=False)
    finally:
        await conn.close()
    sale = [product.id for product in products[:SALE_PRODUCTS]]
    assert sale == list(range(1, SALE_PRODUCTS + 1)), sale
    prices = {product.id: product.price_cents for product in products}
    return client.api_key, client.client.id, sale, {products[-1].id: prices[products[-1].id]}


async def _wait(conn: asyncpg.Connection, query: str, args: list[Any], limit_s: float) -> float:
    started = time.monotonic()
    while not await conn.fetchval(query, *args):
        if time.monotonic() - started > limit_s:
            raise TimeoutError(f"not done within {limit_s:g} s: {query}")
        await asyncio.sleep(0.01)
    return time.monotonic()


async def _one_product_round(
    stack: Stack,
    client_id: int,
    single: dict[int, int],
    orders: int,
    variant: str,
    pids: dict[str, int],
) -> Round:
    [(product_id, price)] = single.items()
    conn = await asyncpg.connect(stack.postgres.url)
    try:
        mailed_before = stack.mail_count()
        async with conn.transaction():
            order_ids = [
                (
                    await orders_repo.insert_with_reservation_job(
                        conn,
                        client_id=client_id,
                        customer=Customer(email=f"one{n}@bench.example.com", name=f"One {n}"),
                        lines=[PricedLine(product_id, 1, price)],
                        total_cents=price,
                        currency="EUR",
                        request_id=None,
                    )
                )[0]
                for n in range(orders)
            ]
        started = time.monotonic()
        cpu_before = _cpu(pids)
        # What the API's RelayWaker does after its commits.
        await conn.execute("SELECT pg_notify('outbox', '')")
        confirmed = await _wait(
            conn,
            "SELECT count(*) = $2 FROM orders WHERE id = any($1::bigint[]) AND status <> 'pending'",
            [order_ids, orders],
            600,
        )
        statuses = dict(
            await conn.fetch(
                "SELECT status, count(*) FROM orders WHERE id = any($1::bigint[]) GROUP BY 1",
                order_ids,
            )
        )
        assert statuses == {"confirmed": orders}, statuses
        while stack.mail_count() < mailed_before + orders:
            if time.monotonic() - started > 600:
                raise TimeoutError("emails")
            await asyncio.sleep(0.01)
        emailed = time.monotonic()
        cpu_after = _cpu(pids)
    finally:
        await conn.close()
    return Round(
        variant,
        orders,
        confirmed_per_s=orders / (confirmed - started),
        emailed_per_s=orders / (emailed - started),
        cpu_ms_per_order=_per_order_ms(cpu_before, cpu_after, orders),
    )


def _sale_round(
    stack: Stack,
    api_url: str,
    api_pid: int,
    api_key: str,
    seconds: float,
    variant: str,
    pids: dict[str, int],
) -> Round:
    script = stack.root / f"sale-{variant}-{time.monotonic_ns()}.lua"
    script.write_text(load.place_orders(api_key, f"sale-{variant}", SALE_PRODUCTS, False))

    async def count_orders() -> int:
        conn = await asyncpg.connect(stack.postgres.url)
        try:
            return int(await conn.fetchval("SELECT count(*) FROM orders"))
        finally:
            await conn.close()

    orders_before = asyncio.run(count_orders())
    mailed_before = stack.mail_count()
    cpu_before = _cpu(pids)
    started = time.monotonic()
    result = load.run_wrk(
        load.ensure_wrk(),
        api_url,
        script,
        seconds=seconds,
        connections=SALE_CONNECTIONS,
        server_pid=api_pid,
        postgres_pid=stack.postgres.pid or 0,
        redis_pid=stack.redis.pid or 0,
    )
    accepted = asyncio.run(count_orders()) - orders_before
    if result.errors:
        _say(f"  wrk counted {result.errors} errors")
    while stack.mail_count() < mailed_before + accepted:
        if time.monotonic() - started > 600:
            raise TimeoutError("sale emails")
        time.sleep(0.01)
    last_email = time.monotonic()
    cpu_after = _cpu(pids)
    return Round(
        variant,
        accepted,
        accepted_per_s=accepted / result.seconds,
        emailed_per_s=accepted / (last_email - started),
        last_email_after_sale_s=last_email - started - result.seconds,
        cpu_ms_per_order=_per_order_ms(cpu_before, cpu_after, accepted),
    )


def _cpu(pids: dict[str, int]) -> dict[str, float]:
    return {name: tree_cpu_seconds(pid) for name, pid in pids.items()}


def _per_order_ms(
    before: dict[str, float], after: dict[str, float], orders: int
) -> dict[str, float]:
    return {name: round(1000 * (after[name] - before[name]) / orders, 3) for name in before}


def _median(rounds: list[Round], variant: str, attribute: str) -> float:
    return float(statistics.median(getattr(r, attribute) for r in rounds if r.variant == variant))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--baseline", default="main", help="the revision to compare with")
    parser.add_argument("--orders", type=int, default=3000, help="orders per one-product round")
    parser.add_argument("--sale-seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--root", type=Path, default=None, help="run directory (default: temp)")
    options = parser.parse_args(argv)
    revision = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "merge-base", "HEAD", options.baseline],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    root = options.root or Path(tempfile.mkdtemp(prefix="pipeline-batching-"))
    _say(f"run directory {root}; baseline {revision[:12]} ({options.baseline})")
    baseline = _baseline_tree(root, revision)
    stack = start_stack(root / "stack", {})
    rounds: list[Round] = []
    try:
        api_key, client_id, _, single = asyncio.run(_seed(stack.postgres.url))
        api = stack.server("api", granian_argv, "api.main:app", 1, API_ENV)
        variants = [BASELINE, BATCHED]
        for round_no in range(options.rounds + 1):
            for variant in variants if round_no % 2 == 0 else variants[::-1]:
                worker = _worker(stack, variant, baseline, {})
                pids = {
                    "worker": worker.pid,
                    "api": api.pid,
                    "postgres": stack.postgres.pid or 0,
                    "redis": stack.redis.pid or 0,
                    "mailsink": stack.mail.pid,
                }
                try:
                    if round_no == 0:
                        # Not counted: connections opened, code paths warmed.
                        asyncio.run(
                            _one_product_round(stack, client_id, single, 200, variant, pids)
                        )
                        _sale_round(stack, api.url, api.pid, api_key, 2, variant, pids)
                        continue
                    one = asyncio.run(
                        _one_product_round(stack, client_id, single, options.orders, variant, pids)
                    )
                    sale = _sale_round(
                        stack, api.url, api.pid, api_key, options.sale_seconds, variant, pids
                    )
                finally:
                    worker.stop()
                    stack.children.remove(worker)
                rounds += [one, sale]
                _say(
                    f"round {round_no} {variant:8s}: one product {one.confirmed_per_s:6.0f}"
                    f" confirmed/s ({one.emailed_per_s:4.0f} emailed/s); sale accepted"
                    f" {sale.accepted_per_s:4.0f}/s, confirmed and emailed"
                    f" {sale.emailed_per_s:4.0f}/s, last email {sale.last_email_after_sale_s:.1f}"
                    f" s after; load average {sale.load_average:.2f}"
                )
                _say(f"  CPU ms per order: one product {one.cpu_ms_per_order}")
                _say(f"  CPU ms per order: sale {sale.cpu_ms_per_order}")
    finally:
        stack.close()
    one_rounds = [r for r in rounds if r.accepted_per_s == 0.0]
    sale_rounds = [r for r in rounds if r.accepted_per_s > 0.0]
    summary: dict[str, Any] = {"baseline_revision": revision, "rounds": [asdict(r) for r in rounds]}
    for variant in variants:
        summary[variant] = {
            "one_product_confirmed_per_s": _median(one_rounds, variant, "confirmed_per_s"),
            "one_product_emailed_per_s": _median(one_rounds, variant, "emailed_per_s"),
            "sale_accepted_per_s": _median(sale_rounds, variant, "accepted_per_s"),
            "sale_emailed_per_s": _median(sale_rounds, variant, "emailed_per_s"),
            "sale_last_email_after_s": _median(sale_rounds, variant, "last_email_after_sale_s"),
            "sale_cpu_ms_per_order": {
                name: statistics.median(
                    r.cpu_ms_per_order[name] for r in sale_rounds if r.variant == variant
                )
                for name in sale_rounds[0].cpu_ms_per_order
            },
        }
    base, new = summary[BASELINE], summary[BATCHED]
    summary["one_product_speedup"] = (
        new["one_product_confirmed_per_s"] / base["one_product_confirmed_per_s"]
    )
    for variant in variants:
        part = summary[variant]
        part["sale_emailed_over_accepted"] = (
            part["sale_emailed_per_s"] / part["sale_accepted_per_s"]
        )
    (root / "pipeline_batching.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "rounds"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
