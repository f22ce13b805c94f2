"""One benchmark run: seed, start the servers, then each phase in turn.

The HTTP scenarios come first (bench.phases.http: interleaved rounds, medians), then the queue
(bench.phases.queues), the memory soak (bench.phases.soak), the flash sale
(bench.phases.flash_sale), the webhooks (bench.phases.webhooks) and the per-order costs
(bench.phases.capacity), each on the same Postgres, Redis and mail sink. A phase that fails is
reported as such; the figures of the others are still worth having.
"""

import asyncio
from collections.abc import Callable

from bench.options import Options
from bench.phases import capacity, flash_sale, http, queues, retention, soak, webhooks
from bench.phases.common import say
from bench.results import Results
from bench.scenarios import all_scenarios
from bench.seed import seed
from bench.stack import Stack


def run(stack: Stack, options: Options) -> Results:
    results = Results()
    miss_window = 2_000 if options.smoke else 30_000
    # Products for cache misses: a fresh window of them for each run of product_miss.
    misses = miss_window * (options.rounds + 1) if options.wants("product_miss") else 0
    say(f"seeding: a client, 100 hot products, {misses} products for cache misses, orders to read")
    data = asyncio.run(seed(stack.postgres.url, misses, 50 if options.smoke else 1_000))
    scenarios = [s for s in all_scenarios(data, miss_window) if options.wants(s.name)]
    needed = {scenario.server for scenario in scenarios}
    if options.wants("queues"):
        needed.add("claims")
    servers = http.start_servers(stack, needed)
    results.titles = {scenario.name: scenario.title for scenario in scenarios}
    http.run(stack, servers, scenarios, options, results)
    if options.wants("queues") and not _phase(
        results, "queue phase", None, lambda: queues.run(stack, servers, data, options, results)
    ):
        return results
    if options.soak_s > 0 and options.wants("soak"):
        _phase(
            results,
            "soak",
            f"soak: {options.soak_s:g} s on one API process and one worker",
            lambda: soak.run(stack, data, options, results),
        )
    if options.wants("flash_sale"):
        _phase(
            results,
            "flash sale",
            "flash sale: one API process, one worker, smtp-sink; orders and reads at once",
            lambda: flash_sale.run(stack, options, results),
        )
    if options.wants("webhooks"):
        _phase(
            results,
            "webhooks phase",
            "webhooks: one API process, one worker, smtp-sink, a fast receiver",
            lambda: webhooks.run(stack, options, results),
        )
    if options.wants("capacity"):
        _phase(
            results,
            "capacity phase",
            "capacity: what one order costs each process, Postgres's WAL and Redis",
            lambda: capacity.run(stack, options, results),
        )
    if "retention" in options.only:
        _phase(
            results,
            "retention soak",
            "retention: one API process, one worker purging the outbox",
            lambda: retention.run(stack, data, options, results),
        )
    return results
    if options.soak_s > 0 and options.wants("soak"):
        say(f"soak: {options.soak_s:g} s on one API process and one worker")
        try:
            soak.run(stack, data, options, results)
        except Exception as exc:
            results.notes.append(f"The soak failed: {exc!r} (see the run directory's logs).")
            say(results.notes[-1])
    if options.wants("flash_sale"):
        say("flash sale: one API process, one worker, smtp-sink; orders and reads at once")
        try:
            flash_sale.run(stack, options, results)
        except Exception as exc:
            results.notes.append(f"The flash sale failed: {exc!r} (see the run directory's logs).")
            say(results.notes[-1])
    if options.wants("webhooks"):
        say("webhooks: one API process, one worker, smtp-sink, a fast receiver")
        try:
            webhooks.run(stack, options, results)
        except Exception as exc:
            results.notes.append(
                f"The webhooks phase failed: {exc!r} (see the run directory's logs)."
            )
            say(results.notes[-1])
    if options.wants("capacity"):
        say("capacity: what one order costs each process, Postgres's WAL and Redis")
        try:
            capacity.run(stack, options, results)
        except Exception as exc:
            results.notes.append(
                f"The capacity phase failed: {exc!r} (see the run directory's logs)."
            )
            say(results.notes[-1])
    if "retention" in options.only:
        say("retention: one API process, one worker purging the outbox")
        try:
            retention.run(stack, data, options, results)
        except Exception as exc:
            results.notes.append(
                f"The retention soak failed: {exc!r} (see the run directory's logs)."
            )
            say(results.notes[-1])
    return results


def _phase(results: Results, name: str, announce: str | None, body: Callable[[], None]) -> bool:
    """Runs one phase; whether it ran to its end. A phase that fails is noted in the report
    and the others still run."""
    if announce is not None:
        say(announce)
    try:
        body()
    except Exception as exc:
        results.notes.append(f"The {name} failed: {exc!r} (see the run directory's logs).")
        say(results.notes[-1])
        return False
    return True
