"""The queue: orders end to end (accepted, confirmed, emailed) against ARQ no-op jobs, on one and
two workers; BackgroundTasks against a queue for time to done and for what a crash loses."""

import asyncio
import os
import secrets
import statistics
import time
import urllib.request
from typing import Any

import asyncpg
from arq.connections import ArqRedis, RedisSettings, create_pool

from bench.noop_worker import NOOP, done_key
from bench.options import Options
from bench.phases.common import say, settle, wait_for_log, wait_until
from bench.results import Results
from bench.seed import Seed, insert_orders
from bench.stack import PRODUCTION_SERVER, Child, Server, Stack


async def _e2e_round(stack: Stack, seed: Seed, orders: int, tag: str) -> tuple[float, float]:
    """Orders accepted (committed with their outbox rows) -> confirmed -> email received."""
    conn = await asyncpg.connect(stack.postgres.url, timeout=10)
    try:
        base = stack.mail_count()
        await insert_orders(conn, seed.client_id, seed.prices, orders, tag)
        started = time.monotonic()

        async def all_mailed() -> bool:
            return stack.mail_count() >= base + orders

        finished = await wait_until(all_mailed, 300, f"{orders} confirmation emails")
    finally:
        await conn.close()
    seconds = finished - started
    # Each order is two jobs: reserve_inventory, then send_confirmation.
    return 2 * orders / seconds, orders / seconds


async def _noop_round(queue: ArqRedis, queue_name: str, jobs: int) -> float:
    started = time.monotonic()
    for first in range(0, jobs, 500):
        await asyncio.gather(
            *(
                queue.enqueue_job(NOOP, _queue_name=queue_name)
                for _ in range(first, min(jobs, first + 500))
            )
        )

    async def drained() -> bool:
        return int(await queue.zcard(queue_name)) == 0

    finished = await wait_until(drained, 300, f"{jobs} no-op jobs")
    return jobs / (finished - started)


async def _time_to_done(url: str, redis_url: str, kind: str, samples: int) -> list[float]:
    queue = await create_pool(RedisSettings.from_dsn(redis_url))
    latencies = []
    try:
        for _ in range(samples):
            token = secrets.token_hex(8)
            sent = time.time()
            await asyncio.to_thread(_post, f"{url}/work/{kind}/{token}")

            async def done(token: str = token) -> bool:
                return bool(await queue.exists(done_key(token)))

            await wait_until(done, 10, f"{kind} work")
            value = await queue.get(done_key(token))
            latencies.append((float(value) - sent) * 1000)
    finally:
        await queue.aclose()
    return latencies


def _post(url: str) -> None:
    request = urllib.request.Request(url, method="POST", data=b"")  # noqa: S310 -- loopback
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 -- loopback
        response.read()


async def _count_done(redis_url: str, tokens: list[str]) -> int:
    queue = await create_pool(RedisSettings.from_dsn(redis_url))
    try:
        return int(await queue.exists(*(done_key(t) for t in tokens)))
    finally:
        await queue.aclose()


def _crash_background(stack: Stack, jobs: int) -> dict[str, Any]:
    """BackgroundTasks die with their process: SIGKILL the server while they wait to run."""
    victim = stack.server(
        "claims_crash",
        PRODUCTION_SERVER,
        "bench.claims_app:claims_app",
        1,
        {"BENCH_NOOP_QUEUE": "bench:noop1"},
    )
    tokens = [secrets.token_hex(8) for _ in range(jobs)]
    for token in tokens:
        _post(f"{victim.url}/work/background/{token}?delay_s=1.0")
    victim.kill()
    time.sleep(1.5)
    done = asyncio.run(_count_done(stack.redis.url, tokens))
    return {"accepted": jobs, "done": done, "lost": jobs - done}


def _crash_queue(
    stack: Stack, claims: Server, worker: Child, jobs: int, recovery_wait_s: float
) -> tuple[dict[str, Any], Child]:
    """Queued jobs outlive a killed worker: they wait in Redis for the next one."""
    tokens = [secrets.token_hex(8) for _ in range(jobs)]
    for token in tokens:
        _post(f"{claims.url}/work/queue/{token}?delay_s=1.0")
    time.sleep(0.3)  # the worker has picked them up and is inside the 1 s of work
    worker.kill()

    async def still_queued() -> int:
        queue = await create_pool(RedisSettings.from_dsn(stack.redis.url))
        try:
            return int(await queue.zcard("bench:noop1"))
        finally:
            await queue.aclose()

    kept = asyncio.run(still_queued())
    done_before = asyncio.run(_count_done(stack.redis.url, tokens))
    replacement = stack.worker(
        "noop1_after_crash", "bench.noop_worker.Settings", {"BENCH_NOOP_QUEUE": "bench:noop1"}
    )
    wait_for_log(replacement, "Starting worker")
    recovered_s: float | None = None
    if recovery_wait_s > 0:
        started = time.monotonic()
        deadline = started + recovery_wait_s
        while time.monotonic() < deadline:
            if asyncio.run(_count_done(stack.redis.url, tokens)) == jobs:
                recovered_s = time.monotonic() - started
                break
            time.sleep(0.25)
    return (
        {
            "accepted": jobs,
            "done_before_kill": done_before,
            "kept_in_redis": kept,
            "lost": jobs - kept - done_before,
            "all_done_after_restart_s": recovered_s,
        },
        replacement,
    )


def run(
    stack: Stack, servers: dict[str, Server], seed: Seed, options: Options, results: Results
) -> None:
    asyncio.run(settle(stack))
    worker1 = stack.worker("worker1", "worker.Settings")
    noop1 = stack.worker("noop1", "bench.noop_worker.Settings", {"BENCH_NOOP_QUEUE": "bench:noop1"})
    noop2 = [
        stack.worker(
            f"noop2_{i}", "bench.noop_worker.Settings", {"BENCH_NOOP_QUEUE": "bench:noop2"}
        )
        for i in (1, 2)
    ]
    for child in (worker1, noop1, *noop2):
        wait_for_log(child, "Starting worker")
    wait_for_log(worker1, "worker_started")

    async def rounds(worker_label: str) -> None:
        queue = await create_pool(RedisSettings.from_dsn(stack.redis.url))
        try:
            if options.warmup_s > 0:
                # Not counted: the workers open their Postgres, Redis and SMTP connections, and
                # the first round would pay for them where the next ones do not.
                say(f"queue warm-up ({worker_label})")
                warmup_orders = max(1, options.e2e_orders // 5)
                await _e2e_round(stack, seed, warmup_orders, f"{worker_label}warm")
                for name in ("bench:noop1", "bench:noop2"):
                    await _noop_round(queue, name, 2 * warmup_orders)
            for round_no in range(options.e2e_rounds):
                say(
                    f"queue round {round_no + 1}/{options.e2e_rounds} ({worker_label}), "
                    f"load average {os.getloadavg()[0]:.2f}"
                )
                jobs_s, orders_s = await _e2e_round(
                    stack, seed, options.e2e_orders, f"{worker_label}{round_no}"
                )
                results.jobs.setdefault(f"e2e_{worker_label}", []).append(jobs_s)
                results.orders_per_s.setdefault(f"e2e_{worker_label}", []).append(orders_s)
                for label, name in (("1w", "bench:noop1"), ("2w", "bench:noop2")):
                    jobs = 2 * options.e2e_orders
                    results.jobs.setdefault(f"noop_{label}", []).append(
                        await _noop_round(queue, name, jobs)
                    )
                say(
                    f"  e2e {worker_label}: {orders_s:.0f} orders/s = {jobs_s:.0f} jobs/s; "
                    f"noop 1w {results.jobs['noop_1w'][-1]:.0f}, "
                    f"2w {results.jobs['noop_2w'][-1]:.0f} jobs/s"
                )
        finally:
            await queue.aclose()

    asyncio.run(rounds("1w"))
    worker2 = stack.worker("worker2", "worker.Settings")
    wait_for_log(worker2, "worker_started")
    asyncio.run(rounds("2w"))
    worker2.stop()

    samples = 5 if options.smoke else 25
    claims = servers["claims"]
    for kind in ("background", "queue"):
        results.done_ms[kind] = asyncio.run(
            _time_to_done(claims.url, stack.redis.url, kind, samples)
        )
    say(
        "time to done: BackgroundTasks "
        f"{statistics.median(results.done_ms['background']):.1f} ms, ARQ "
        f"{statistics.median(results.done_ms['queue']):.1f} ms"
    )
    crash_jobs = 5 if options.smoke else 20
    results.crash["background"] = _crash_background(stack, crash_jobs)
    results.crash["queue"], _ = _crash_queue(
        stack, claims, noop1, crash_jobs, options.crash_recovery_wait_s
    )
    say(f"crash: {results.crash}")
