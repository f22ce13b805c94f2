"""Memory over a soak: RSS of one API process and one worker under steady load."""

import asyncio
import contextlib
import json
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

from bench import load
from bench.open_loop import feed_orders
from bench.options import Options
from bench.phases.common import say, settle, wait_for_log, wait_until
from bench.programs import ensure_wrk
from bench.results import Results
from bench.seed import HOT_PRODUCTS, Seed
from bench.stack import PRODUCTION_POOL, PRODUCTION_SERVER, Stack, tree_rss_bytes

# One worker confirmed 200-300 orders/s in the queue phase, with the machine to itself; beside
# an API serving reads flat out it kept up with 50/s (backlog 2-15) and not with 100/s
# (docs/decisions/0026-paced-soak.md), so the queue phase's figure is no guide to what is
# sustainable here.
SOAK_DEFAULT_ORDER_RATE = 50.0


def _soak_order(seed: Seed) -> Callable[[int], dict[str, Any]]:
    def body(n: int) -> dict[str, Any]:
        return {
            "customer": {"email": f"soak{n}@soak.example.com", "name": f"Soak {n}"},
            "items": [{"product_id": seed.hot_first + n % HOT_PRODUCTS, "quantity": 1}],
        }

    return body


def run(stack: Stack, seed: Seed, options: Options, results: Results) -> None:
    """RSS of the API and the worker under steady load, sampled from warm-up to the end.

    Orders arrive at a fixed rate below what one worker confirms (SOAK_DEFAULT_ORDER_RATE), so the
    worker keeps up and its memory is that of a steady state, not of a growing backlog; reads
    (a product, an order, a page) fill the rest of the API's capacity. The backlog (orders
    placed, confirmation not yet received) is sampled with the memory, to show it stays flat.
    """
    asyncio.run(settle(stack))
    api = stack.server("api_soak", PRODUCTION_SERVER, "api.main:app", 1, PRODUCTION_POOL)
    worker = next((c for c in stack.children if c.name == "worker1"), None)
    if worker is None:  # the queue phase did not run
        worker = stack.worker("worker1", "worker.Settings")
        wait_for_log(worker, "worker_started")
    rate = options.soak_order_rate or SOAK_DEFAULT_ORDER_RATE
    say(f"soak: {rate:.0f} orders/s, reads on the rest of the API's capacity")
    wrk = ensure_wrk()
    script = stack.root / "lua" / "soak.lua"
    script.write_text(load.reads(seed.api_key, HOT_PRODUCTS, seed.order_first, seed.order_count))
    counts = {"placed": 0, "errors": 0, "late": 0}
    mailed_before = stack.mail_count()
    samples: list[dict[str, float]] = []
    started = time.monotonic()

    def sample() -> None:
        samples.append(
            {
                "t_s": round(time.monotonic() - started, 1),
                "api_mb": tree_rss_bytes(api.pid) / 2**20,
                "worker_mb": tree_rss_bytes(worker.pid) / 2**20,
                "backlog": counts["placed"] - (stack.mail_count() - mailed_before),
            }
        )

    sample()
    process = subprocess.Popen(
        [
            wrk,
            "-t1",
            "-c16",
            f"-d{int(options.soak_s)}s",
            "--timeout=10s",
            "-s",
            str(script),
            api.url,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    feeder = threading.Thread(
        target=lambda: asyncio.run(
            feed_orders(api.url, seed.api_key, rate, options.soak_s, _soak_order(seed), counts)
        ),
        daemon=True,
    )
    feeder.start()
    stop = threading.Event()

    def sampler() -> None:
        while not stop.wait(max(1.0, options.soak_s / 60)):
            sample()

    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    output, _ = process.communicate(timeout=options.soak_s + 60)
    feeder.join(timeout=60)
    stop.set()
    thread.join()
    sample()
    load_stopped = time.monotonic()

    async def all_mailed() -> bool:
        return stack.mail_count() - mailed_before >= counts["placed"]

    drained_s: float | None = None
    with contextlib.suppress(TimeoutError):
        drained_s = asyncio.run(wait_until(all_mailed, 120, "the soak's emails")) - load_stopped
    lines = [line for line in output.splitlines() if line.startswith("BENCH_JSON ")]
    summary = json.loads(lines[-1].removeprefix("BENCH_JSON ")) if lines else {}
    # Warm-up: the first fifth. The worker's RSS grows for one to two minutes (pools, kept SMTP
    # connections, allocator arenas) and is then flat (docs/decisions/0026-paced-soak.md), so a
    # ten-minute soak judges the remaining eight.
    warm = next(s for s in samples if s["t_s"] >= options.soak_s / 5)
    end = samples[-1]
    results.memory = {
        "seconds": options.soak_s,
        "requests": summary.get("requests"),
        "errors": sum(v for k, v in summary.items() if k.endswith("_errors")),
        "order_rate_per_s": round(rate, 1),
        "orders_placed": counts["placed"],
        "order_errors": counts["errors"],
        "orders_late": counts["late"],
        "backlog_end": end["backlog"],
        "backlog_max": max(s["backlog"] for s in samples),
        "drained_after_s": None if drained_s is None else round(drained_s, 1),
        "samples": samples,
        "api_warm_mb": warm["api_mb"],
        "api_end_mb": end["api_mb"],
        "worker_warm_mb": warm["worker_mb"],
        "worker_end_mb": end["worker_mb"],
    }
    api.stop()
