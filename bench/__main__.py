"""`python -m bench [--smoke] [--rounds N] [--seconds S] [--soak-seconds S]
[--flash-sale-seconds S] [--out DIR] [--only A,B]`.

Starts Postgres (durable commits), Redis and a mail sink on free loopback ports, the API and
the claims apps under uvicorn and Granian, and ARQ workers; measures the HTTP scenarios, the
queue, a memory soak and a flash sale (bench.run); writes DIR/performance.md and its charts;
stops everything it started. `--only flash_sale` runs the flash sale alone and prints its
figures.
"""

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from bench.options import Options
from bench.run import run
from bench.stack import BenchError, start_stack
from devstack.project import REPO_ROOT


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--smoke", action="store_true", help="seconds, not minutes: checks the harness only"
    )
    parser.add_argument("--rounds", type=int, help="rounds per HTTP scenario (5; smoke 1)")
    parser.add_argument("--seconds", type=float, help="seconds per HTTP run, whole (3; smoke 1)")
    parser.add_argument(
        "--soak-seconds", type=float, help="memory soak length (600; smoke 0 = no soak)"
    )
    parser.add_argument(
        "--soak-order-rate",
        type=float,
        help="orders per second during the soak (50: one worker keeps up beside the API's reads)",
    )
    parser.add_argument(
        "--flash-sale-seconds", type=float, help="length of the flash sale (15; smoke 2), whole"
    )
    parser.add_argument(
        "--out", type=Path, default=REPO_ROOT / "docs", help="report directory (%(default)s)"
    )
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated scenario names (and 'queues', 'soak', 'flash_sale',"
        " 'webhooks', 'capacity'): run just those"
        " and print"
        " their medians instead of writing the report",
    )
    parser.add_argument(
        "--retention-seconds",
        type=float,
        default=180.0,
        help="length of the retention soak (--only retention; %(default)s)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the run directory (logs, data)")
    args = parser.parse_args(argv)
    smoke = args.smoke
    options = Options(
        rounds=args.rounds or (1 if smoke else 5),
        seconds=args.seconds or (1.0 if smoke else 3.0),
        warmup_s=0 if smoke else 1.0,
        e2e_orders=20 if smoke else 500,
        e2e_rounds=1 if smoke else 3,
        soak_s=args.soak_seconds if args.soak_seconds is not None else (0 if smoke else 600),
        smoke=smoke,
        crash_recovery_wait_s=0 if smoke else 40,
        soak_order_rate=args.soak_order_rate,
        flash_before_s=1.0 if smoke else 5.0,
        flash_sale_s=args.flash_sale_seconds or (2.0 if smoke else 15.0),
        flash_reference_s=1.0 if smoke else 10.0,
        flash_order_connections=8 if smoke else 32,
        webhook_pipeline_s=2.0 if smoke else 10.0,
        capacity_s=2.0 if smoke else 15.0,
        only=frozenset(name for name in args.only.split(",") if name),
        retention_s=args.retention_seconds,
    )
    from bench.report import print_medians, write_report

    started = datetime.now(UTC)
    load_before = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="bench-"))
    print(f"bench: run directory {root} (logs of every process)", flush=True)
    stack = None
    try:
        # Production log settings for every child. One API key drives all the load here, where
        # production spreads it over many: its per-key rate limit would measure refusals.
        env = {"LOG_FORMAT": "json", "LOG_LEVEL": "INFO", "RATE_LIMIT_PER_S": "1000000"}
        stack = start_stack(root, env)
        results = run(stack, options)
        if options.only:
            print_medians(results)
            return 0
        report = write_report(
            args.out, stack, options, results, results.titles, started, load_before
        )
        print(f"bench: wrote {report}", flush=True)
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr, flush=True)
        return 1
    finally:
        if stack is not None:
            stack.close()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
