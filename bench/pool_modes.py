"""`python -m bench.pool_modes [--rounds N] [--seconds S]`: what transaction pooling costs.

One API process per arm, side by side on one Postgres (durable commits), the arms alternating
within each round, in an order shuffled from round to round:

- `direct`: DATABASE_URL is Postgres, DATABASE_POOL_MODE=session (named prepared statements,
  cached per connection: each statement is parsed once per connection);
- `direct_nocache`: the same Postgres, DATABASE_POOL_MODE=transaction (every statement sent
  unnamed and parsed again with its Bind), which isolates the cost of the statement cache;
- `pgbouncer`: DATABASE_URL is a pgbouncer in transaction pooling in front of it;
- `pgbouncer_session`: a pgbouncer in session pooling (each client connection keeps its server
  connection, so the statement cache stays on and only the hop is paid; its connect-time
  settings are dropped), the alternative that multiplexes nothing.

Measured on POST /v1/orders and on a product read that misses the cache (every GET of another
product). Prints a Markdown table of the medians over rounds (docs/decisions/0037).
"""

import argparse
import asyncio
import random
import shutil
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench import load
from bench.phases.common import say
from bench.programs import ensure_wrk
from bench.seed import HOT_PRODUCTS, seed
from bench.stack import (
    PRODUCTION_POOL,
    PRODUCTION_SERVER,
    Server,
    Stack,
    start_stack,
    tree_cpu_seconds,
)
from devstack.services import LOOPBACK, PgBouncerService, ensure_binaries, free_port

ARMS = ("direct", "direct_nocache", "pgbouncer", "pgbouncer_session")
SCENARIOS = ("post_order", "product_miss")
CONNECTIONS = 32


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pool_modes", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument(
        "--miss-window", type=int, default=12_000, help="products each miss run reads once"
    )
    args = parser.parse_args(argv)
    ensure_binaries(pgbouncer=True)
    wrk = ensure_wrk()
    root = Path(tempfile.mkdtemp(prefix="bench-pool-modes-"))
    stack = start_stack(root, {})
    bouncer = PgBouncerService(
        root / "pgbouncer",
        free_port(),
        upstream=(LOOPBACK, stack.postgres.port),
        # More server connections than the API's pool: pgbouncer multiplexes, never queues.
        default_pool_size=20,
    )
    session_bouncer = PgBouncerService(
        root / "pgbouncer-session",
        free_port(),
        upstream=(LOOPBACK, stack.postgres.port),
        pool_mode="session",
        default_pool_size=20,
        ignore_startup_parameters=("statement_timeout", "idle_in_transaction_session_timeout"),
    )
    try:
        bouncer.start()
        session_bouncer.start()
        runs = args.rounds * len(ARMS)
        data = asyncio.run(seed(stack.postgres.url, args.miss_window * runs, 100))
        say(f"seeded {args.miss_window * runs} products to miss on")
        env = {
            "direct": {**PRODUCTION_POOL},
            "direct_nocache": {**PRODUCTION_POOL, "DATABASE_POOL_MODE": "transaction"},
            "pgbouncer": {
                **PRODUCTION_POOL,
                "DATABASE_URL": bouncer.url,
                "DATABASE_POOL_MODE": "transaction",
            },
            "pgbouncer_session": {**PRODUCTION_POOL, "DATABASE_URL": session_bouncer.url},
        }
        bouncers = {"pgbouncer": bouncer, "pgbouncer_session": session_bouncer}
        servers = {
            arm: stack.server(arm, PRODUCTION_SERVER, "api.main:app", 1, env[arm]) for arm in ARMS
        }
        results: dict[tuple[str, str], list[load.LoadResult]] = {}
        extra_cpu: dict[tuple[str, str], list[float]] = {}
        scripts = root / "lua"
        scripts.mkdir()
        window = 0
        for round_no in range(args.rounds):
            # Each round in another order, so that no arm always runs first or after another
            # (a rotation would keep each arm behind the same one).
            order = list(ARMS)
            random.Random(round_no).shuffle(order)
            for arm in order:
                for scenario in SCENARIOS:
                    if scenario == "post_order":
                        # The tag goes into the customers' e-mail domains: no underscore.
                        tag = f"{arm.replace('_', '-')}{round_no}"
                        text = load.place_orders(data.api_key, tag, HOT_PRODUCTS, idempotency=True)
                    else:
                        first = data.miss_first + window * args.miss_window
                        text = load.cycling_ids(
                            "/v1/products/", first, args.miss_window, data.api_key
                        )
                        window += 1
                    script = scripts / f"{arm}-{scenario}-{round_no}.lua"
                    script.write_text(text)
                    result, bouncer_cpu = _measure(
                        wrk, servers[arm], stack, bouncers.get(arm), script, args.seconds
                    )
                    results.setdefault((arm, scenario), []).append(result)
                    extra_cpu.setdefault((arm, scenario), []).append(bouncer_cpu)
                    say(
                        f"round {round_no + 1} {arm:15s} {scenario:13s} {result.rps:7.0f} req/s"
                        f"  p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:7.2f} ms"
                        f"  errors {result.errors}"
                    )
        print(_table(results, extra_cpu))
    finally:
        # The API servers first: a pgbouncer's orderly stop waits for its clients to leave.
        stack.stop_children()
        session_bouncer.stop()
        bouncer.stop()
        stack.close()
        shutil.rmtree(root, ignore_errors=True)
    return 0


def _measure(
    wrk: str,
    server: Server,
    stack: Stack,
    bouncer: PgBouncerService | None,
    script: Path,
    seconds: float,
) -> tuple[load.LoadResult, float]:
    bouncer_pid = None if bouncer is None else bouncer.pid
    before = 0.0 if bouncer_pid is None else tree_cpu_seconds(bouncer_pid)
    result = load.run_wrk(
        wrk,
        server.url,
        script,
        seconds=seconds,
        connections=CONNECTIONS,
        server_pid=server.pid,
        postgres_pid=stack.postgres.pid or 0,
        redis_pid=stack.redis.pid or 0,
    )
    after = 0.0 if bouncer_pid is None else tree_cpu_seconds(bouncer_pid)
    return result, (after - before) / result.seconds


def _table(
    results: dict[tuple[str, str], list[load.LoadResult]],
    extra_cpu: dict[tuple[str, str], list[float]],
) -> str:
    lines = [
        "| scenario | arm | req/s | vs direct | p50 ms | p99 ms | API CPU µs/req "
        "| Postgres CPU µs/req | pgbouncer CPU µs/req | errors |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for scenario in SCENARIOS:
        base = statistics.median(r.rps for r in results[("direct", scenario)])
        for arm in ARMS:
            runs = results[(arm, scenario)]
            rps = statistics.median(r.rps for r in runs)

            def per_request(cores: list[float], rps_each: list[float]) -> float:
                return statistics.median(c / r * 1e6 for c, r in zip(cores, rps_each, strict=True))

            rates = [r.rps for r in runs]
            lines.append(
                f"| {scenario} | {arm} | {rps:.0f} | {rps / base:.2f}x "
                f"| {statistics.median(r.p50_ms for r in runs):.2f} "
                f"| {statistics.median(r.p99_ms for r in runs):.2f} "
                f"| {per_request([r.server_cpu for r in runs], rates):.0f} "
                f"| {per_request([r.postgres_cpu for r in runs], rates):.0f} "
                f"| {per_request(extra_cpu[(arm, scenario)], rates):.0f} "
                f"| {sum(r.errors for r in runs)} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
