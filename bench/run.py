"""One benchmark run: start the system, measure every scenario in interleaved rounds, report.

HTTP scenarios run one at a time (the machine has two cores), in rounds: round 1 runs every
scenario once, round 2 again, and so on, so that a neighbour's load lands on all scenarios alike
rather than on whichever ran at that moment. Figures are medians over rounds.
"""

import asyncio
import contextlib
import json
import os
import random
import secrets
import statistics
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import asyncpg
from arq.connections import ArqRedis, RedisSettings, create_pool

from bench import load
from bench.load import LoadResult
from bench.noop_worker import NOOP, done_key
from bench.stack import Child, Server, Stack, granian_argv, tree_rss_bytes, uvicorn_argv
from shop.catalogue import repository as products_repo
from shop.catalogue.schemas import ProductCreate
from shop.clients.service import create_client
from shop.orders import repository as orders_repo
from shop.orders.repository import PricedLine
from shop.orders.schemas import Customer

HOT_PRODUCTS = 100
CONNECTIONS = 64
# The API's pool as the README and docker-compose.yml ship it.
PRODUCTION_POOL = {"DB_POOL_MIN_SIZE": "4", "DB_POOL_MAX_SIZE": "10"}
# The server the API ships with (api.server, the Dockerfile): every app here runs on it, hello
# world included, so that each ratio compares like with like; uvicorn is measured beside it.
PRODUCTION_SERVER = granian_argv


@dataclass(frozen=True)
class Options:
    rounds: int
    seconds: float
    warmup_s: float
    e2e_orders: int
    e2e_rounds: int
    soak_s: float
    smoke: bool
    crash_recovery_wait_s: float
    # Orders per second the soak places; None: SOAK_DEFAULT_ORDER_RATE.
    soak_order_rate: float | None = None
    # Scenario names to run, plus "queues" and "soak" for those phases; empty: everything.
    only: frozenset[str] = frozenset()

    def wants(self, name: str) -> bool:
        return not self.only or name in self.only


@dataclass(frozen=True)
class Scenario:
    name: str
    group: str
    title: str
    server: str
    script: Callable[[int], str]  # invocation number -> Lua script
    connections: int = CONNECTIONS


@dataclass
class Results:
    http: dict[str, list[LoadResult]] = field(default_factory=dict)
    loads: dict[str, list[float]] = field(default_factory=dict)
    jobs: dict[str, list[float]] = field(default_factory=dict)  # jobs per second per round
    orders_per_s: dict[str, list[float]] = field(default_factory=dict)
    done_ms: dict[str, list[float]] = field(default_factory=dict)
    crash: dict[str, dict[str, Any]] = field(default_factory=dict)
    memory: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    titles: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "http": {k: [asdict(r) for r in v] for k, v in self.http.items()},
            "loads": self.loads,
            "jobs": self.jobs,
            "orders_per_s": self.orders_per_s,
            "done_ms": self.done_ms,
            "crash": self.crash,
            "memory": self.memory,
            "notes": self.notes,
        }


def _say(message: str) -> None:
    print(f"bench: {message}", flush=True)


# --- seeding ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seed:
    api_key: str
    client_id: int
    hot_first: int
    miss_first: int
    miss_count: int
    order_first: int
    order_count: int
    prices: dict[int, int]


async def _seed(dsn: str, miss_count: int, order_count: int) -> Seed:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        async with conn.transaction():
            new = await create_client(conn, "bench", is_admin=True)
            hot = [
                await products_repo.upsert_by_sku(
                    conn,
                    ProductCreate(
                        sku=f"BENCH-{i:04d}",
                        name=f"Bench product {i}",
                        price_cents=100 + i,
                        stock=1_000_000_000,
                    ),
                )
                for i in range(1, HOT_PRODUCTS + 1)
            ]
            # Products read once each: every GET of one is a cache miss.
            miss_first = await conn.fetchval(
                "WITH new AS (INSERT INTO products (sku, name, price_cents, currency, stock)"
                " SELECT 'MISS-' || g, 'Rarely read product ' || g, 1000, 'EUR', 0"
                " FROM generate_series(1, $1::int) AS g RETURNING id) SELECT min(id) FROM new",
                miss_count,
            )
        prices = {p.id: p.price_cents for p in hot}
        order_ids = await _insert_orders(conn, new.client.id, prices, order_count, "seed")
        # The seeded orders are for reading; their jobs are not part of any measurement.
        await conn.execute("UPDATE outbox SET delivered_at = now() WHERE delivered_at IS NULL")
    finally:
        await conn.close()
    assert hot[0].id + HOT_PRODUCTS - 1 == hot[-1].id, "hot products must have consecutive ids"
    return Seed(
        api_key=new.api_key,
        client_id=new.client.id,
        hot_first=hot[0].id,
        miss_first=int(miss_first),
        miss_count=miss_count,
        order_first=order_ids[0],
        order_count=len(order_ids),
        prices=prices,
    )


async def _insert_orders(
    conn: asyncpg.Connection, client_id: int, prices: dict[int, int], count: int, tag: str
) -> list[int]:
    """`count` orders with two lines each, in one transaction, through the product's insert."""
    ids = sorted(prices)
    order_ids = []
    async with conn.transaction():
        for n in range(count):
            a, b = random.sample(ids, 2)
            lines = [PricedLine(a, 1, prices[a]), PricedLine(b, 2, prices[b])]
            order_id, _ = await orders_repo.insert_with_reservation_job(
                conn,
                client_id=client_id,
                customer=Customer(email=f"e2e{n}@{tag}.example.com", name=f"Customer {n}"),
                lines=lines,
                total_cents=sum(line.quantity * line.unit_price_cents for line in lines),
                currency="EUR",
                request_id=None,
            )
            order_ids.append(order_id)
    # What the API's RelayWaker does after its commits: wake the workers' relays.
    await conn.execute("SELECT pg_notify('outbox', '')")
    return order_ids


# --- HTTP scenarios -----------------------------------------------------------------------------


def _scenarios(seed: Seed, options: Options, miss_window: int) -> list[Scenario]:
    key = seed.api_key
    hot = seed.hot_first
    s = load.static_request

    def fixed(text: str) -> Callable[[int], str]:
        return lambda _n: text

    def miss(n: int) -> str:
        return load.cycling_ids(
            "/v1/products/", seed.miss_first + n * miss_window, miss_window, key
        )

    def orders_script(n: int) -> str:
        return load.place_orders(key, f"r{n}", HOT_PRODUCTS, idempotency=True)

    hot_ids = load.cycling_ids("/v1/products/", hot, HOT_PRODUCTS, key)
    by_id = load.cycling_ids("/driver/async/", hot, HOT_PRODUCTS, None)
    greeting = s("/hello", method="POST", body='{"name": "Ada"}')
    return [
        Scenario("hello", "ceiling", "GET /hello (hello world)", "hello1", fixed(s("/hello"))),
        Scenario("post_order", "api", "POST /v1/orders", "api1", orders_script),
        Scenario("product_hit", "api", "GET /v1/products/{id}, cached", "api1", fixed(hot_ids)),
        Scenario("product_miss", "api", "GET /v1/products/{id}, cache miss", "api1", miss),
        Scenario(
            "order_get",
            "api",
            "GET /v1/orders/{id}",
            "api1",
            fixed(load.cycling_ids("/v1/orders/", seed.order_first, seed.order_count, key)),
        ),
        Scenario(
            "orders_page",
            "api",
            "GET /v1/orders?limit=50",
            "api1",
            fixed(s("/v1/orders?limit=50", key)),
        ),
        Scenario("hello_2p", "scaling", "GET /hello, 2 processes", "hello2", fixed(s("/hello"))),
        Scenario("post_order_2p", "scaling", "POST /v1/orders, 2 processes", "api2", orders_script),
        Scenario(
            "post_order_pool32",
            "scaling",
            "POST /v1/orders, pool of 32 instead of 10",
            "api1_pool32",
            orders_script,
        ),
        Scenario(
            "product_hit_2p",
            "scaling",
            "GET /v1/products/{id} cached, 2 processes",
            "api2",
            fixed(hot_ids),
        ),
        Scenario(
            "hello_uvicorn", "server", "GET /hello, uvicorn", "uvicorn_hello", fixed(s("/hello"))
        ),
        Scenario(
            "post_order_uvicorn",
            "server",
            "POST /v1/orders, uvicorn",
            "uvicorn_api",
            orders_script,
        ),
        Scenario(
            "product_hit_uvicorn",
            "server",
            "GET /v1/products/{id} cached, uvicorn",
            "uvicorn_api",
            fixed(hot_ids),
        ),
        Scenario(
            "driver_sync_in_async",
            "claim_driver",
            "sync driver (psycopg) in async def",
            "claims",
            fixed(load.cycling_ids("/driver/sync-in-async/", hot, HOT_PRODUCTS, None)),
        ),
        Scenario(
            "driver_async",
            "claim_driver",
            "async driver (asyncpg pool) in async def",
            "claims",
            fixed(by_id),
        ),
        Scenario(
            "driver_sync_def",
            "claim_driver",
            "sync driver (psycopg) in def, threadpool",
            "claims",
            fixed(load.cycling_ids("/driver/sync-def/", hot, HOT_PRODUCTS, None)),
        ),
        Scenario(
            "conn_new",
            "claim_pool",
            "new connection per request, 64 connections",
            "claims",
            fixed(load.cycling_ids("/conn/new/", hot, HOT_PRODUCTS, None)),
        ),
        Scenario(
            "conn_pool",
            "claim_pool",
            "pooled connection, 64 connections",
            "claims",
            fixed(load.cycling_ids("/conn/pool/", hot, HOT_PRODUCTS, None)),
        ),
        Scenario(
            "conn_new_c1",
            "claim_pool",
            "new connection per request, 1 connection",
            "claims",
            fixed(load.cycling_ids("/conn/new/", hot, HOT_PRODUCTS, None)),
            connections=1,
        ),
        Scenario(
            "conn_pool_c1",
            "claim_pool",
            "pooled connection, 1 connection",
            "claims",
            fixed(load.cycling_ids("/conn/pool/", hot, HOT_PRODUCTS, None)),
            connections=1,
        ),
        Scenario(
            "ser_star_dicts",
            "claim_serialize",
            "SELECT * as dicts, 100 rows",
            "claims",
            fixed(s("/serialize/star-dicts")),
        ),
        Scenario(
            "ser_typed",
            "claim_serialize",
            "3 columns, typed return, 100 rows",
            "claims",
            fixed(s("/serialize/columns-typed")),
        ),
        Scenario(
            "ser_typed_response_class",
            "claim_serialize",
            "3 columns, typed, response_class=JSONResponse, 100 rows",
            "claims",
            fixed(s("/serialize/columns-typed-response-class")),
        ),
        Scenario(
            "mw_none", "claim_middleware", "POST /hello, no middleware", "hello1", fixed(greeting)
        ),
        Scenario(
            "mw_body_logging",
            "claim_middleware",
            "@app.middleware body logging (guide BAD)",
            "mw_body",
            fixed(greeting),
        ),
        Scenario(
            "mw_http_timing",
            "claim_middleware",
            "@app.middleware timing (guide GOOD)",
            "mw_http",
            fixed(greeting),
        ),
        Scenario(
            "mw_asgi_timing",
            "claim_middleware",
            "pure ASGI timing (the product's)",
            "mw_asgi",
            fixed(greeting),
        ),
    ]


def _start_servers(stack: Stack, needed: set[str]) -> dict[str, Server]:
    hello = "bench.claims_app:hello_app"
    specs: list[tuple[str, Any, str, int, dict[str, str]]] = [
        ("api1", PRODUCTION_SERVER, "api.main:app", 1, PRODUCTION_POOL),
        ("api2", PRODUCTION_SERVER, "api.main:app", 2, PRODUCTION_POOL),
        (
            "api1_pool32",
            PRODUCTION_SERVER,
            "api.main:app",
            1,
            {"DB_POOL_MIN_SIZE": "4", "DB_POOL_MAX_SIZE": "32"},
        ),
        ("hello1", PRODUCTION_SERVER, hello, 1, {}),
        ("hello2", PRODUCTION_SERVER, hello, 2, {}),
        ("uvicorn_hello", uvicorn_argv, hello, 1, {}),
        ("uvicorn_api", uvicorn_argv, "api.main:app", 1, PRODUCTION_POOL),
        ("mw_body", PRODUCTION_SERVER, "bench.claims_app:body_logging_app", 1, {}),
        ("mw_http", PRODUCTION_SERVER, "bench.claims_app:http_timing_app", 1, {}),
        ("mw_asgi", PRODUCTION_SERVER, "bench.claims_app:asgi_timing_app", 1, {}),
        (
            "claims",
            PRODUCTION_SERVER,
            "bench.claims_app:claims_app",
            1,
            {"BENCH_NOOP_QUEUE": "bench:noop1"},
        ),
    ]
    servers = {}
    for name, argv_for, app, workers, env in specs:
        if name not in needed:
            continue
        _say(f"starting {name}: {app} x{workers}")
        servers[name] = stack.server(name, argv_for, app, workers, env)
    return servers


def _run_http(
    stack: Stack,
    servers: dict[str, Server],
    scenarios: list[Scenario],
    options: Options,
    results: Results,
) -> None:
    wrk = load.ensure_wrk()
    scripts_dir = stack.root / "lua"
    scripts_dir.mkdir(exist_ok=True)
    invocation: dict[str, int] = {}

    def once(scenario: Scenario, seconds: float) -> LoadResult:
        n = invocation.get(scenario.name, 0)
        invocation[scenario.name] = n + 1
        script = scripts_dir / f"{scenario.name}-{n}.lua"
        script.write_text(scenario.script(n))
        server = servers[scenario.server]
        assert server.process is not None
        return load.run_wrk(
            wrk,
            server.url,
            script,
            seconds=seconds,
            connections=scenario.connections,
            server_pid=server.pid,
            postgres_pid=stack.postgres.pid or 0,
            redis_pid=stack.redis.pid or 0,
        )

    if options.warmup_s > 0:
        _say("warming up every scenario once")
        for scenario in scenarios:
            once(scenario, options.warmup_s)
    for round_no in range(1, options.rounds + 1):
        load1 = os.getloadavg()[0]
        _say(f"round {round_no}/{options.rounds} (load average {load1:.2f})")
        order = list(scenarios)
        # The order within a round changes too, so that no scenario always follows the heaviest.
        random.Random(round_no).shuffle(order)
        for scenario in order:
            stack.check()
            results.loads.setdefault(scenario.name, []).append(os.getloadavg()[0])
            result = once(scenario, options.seconds)
            results.http.setdefault(scenario.name, []).append(result)
            _say(
                f"  {scenario.name:28s} {result.rps:9.0f} req/s  p50 {result.p50_ms:6.2f} ms"
                f"  p99 {result.p99_ms:7.2f} ms  errors {result.errors}"
            )


# --- queue scenarios ----------------------------------------------------------------------------


async def _wait_until(predicate: Callable[[], Any], limit_s: float, what: str) -> float:
    started = time.monotonic()
    while True:
        if await predicate():
            return time.monotonic()
        if time.monotonic() - started > limit_s:
            raise TimeoutError(f"{what} did not happen within {limit_s:g}s")
        await asyncio.sleep(0.005)


def _wait_for_log(child: Child, marker: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while marker not in child.log_path.read_text(errors="replace"):
        child.check()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{child.name} did not log {marker!r} within {timeout:g}s")
        time.sleep(0.05)


async def _e2e_round(stack: Stack, seed: Seed, orders: int, tag: str) -> tuple[float, float]:
    """Orders accepted (committed with their outbox rows) -> confirmed -> email received."""
    conn = await asyncpg.connect(stack.postgres.url, timeout=10)
    try:
        base = stack.mail_count()
        await _insert_orders(conn, seed.client_id, seed.prices, orders, tag)
        started = time.monotonic()

        async def all_mailed() -> bool:
            return stack.mail_count() >= base + orders

        finished = await _wait_until(all_mailed, 300, f"{orders} confirmation emails")
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

    finished = await _wait_until(drained, 300, f"{jobs} no-op jobs")
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

            await _wait_until(done, 10, f"{kind} work")
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
    _wait_for_log(replacement, "Starting worker")
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


async def _settle(stack: Stack) -> None:
    """Orders placed so far (seeded, or by the HTTP scenarios) are not part of what follows."""
    conn = await asyncpg.connect(stack.postgres.url, timeout=10)
    try:
        async with conn.transaction():
            await conn.execute("UPDATE outbox SET delivered_at = now() WHERE delivered_at IS NULL")
            # The relay re-delivers the jobs of orders still pending (shop/jobs/relay.py): close
            # them, or the workers would work through them in the middle of a measurement.
            await conn.execute(
                "UPDATE orders SET status = 'cancelled', cancelled_at = now()"
                " WHERE status = 'pending'"
            )
    finally:
        await conn.close()


def _run_queues(
    stack: Stack, servers: dict[str, Server], seed: Seed, options: Options, results: Results
) -> None:
    asyncio.run(_settle(stack))
    worker1 = stack.worker("worker1", "worker.Settings")
    noop1 = stack.worker("noop1", "bench.noop_worker.Settings", {"BENCH_NOOP_QUEUE": "bench:noop1"})
    noop2 = [
        stack.worker(
            f"noop2_{i}", "bench.noop_worker.Settings", {"BENCH_NOOP_QUEUE": "bench:noop2"}
        )
        for i in (1, 2)
    ]
    for child in (worker1, noop1, *noop2):
        _wait_for_log(child, "Starting worker")
    _wait_for_log(worker1, "worker_started")

    async def rounds(worker_label: str) -> None:
        queue = await create_pool(RedisSettings.from_dsn(stack.redis.url))
        try:
            if options.warmup_s > 0:
                # Not counted: the workers open their Postgres, Redis and SMTP connections, and
                # the first round would pay for them where the next ones do not.
                _say(f"queue warm-up ({worker_label})")
                warmup_orders = max(1, options.e2e_orders // 5)
                await _e2e_round(stack, seed, warmup_orders, f"{worker_label}warm")
                for name in ("bench:noop1", "bench:noop2"):
                    await _noop_round(queue, name, 2 * warmup_orders)
            for round_no in range(options.e2e_rounds):
                _say(
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
                _say(
                    f"  e2e {worker_label}: {orders_s:.0f} orders/s = {jobs_s:.0f} jobs/s; "
                    f"noop 1w {results.jobs['noop_1w'][-1]:.0f}, "
                    f"2w {results.jobs['noop_2w'][-1]:.0f} jobs/s"
                )
        finally:
            await queue.aclose()

    asyncio.run(rounds("1w"))
    worker2 = stack.worker("worker2", "worker.Settings")
    _wait_for_log(worker2, "worker_started")
    asyncio.run(rounds("2w"))
    worker2.stop()

    samples = 5 if options.smoke else 25
    claims = servers["claims"]
    for kind in ("background", "queue"):
        results.done_ms[kind] = asyncio.run(
            _time_to_done(claims.url, stack.redis.url, kind, samples)
        )
    _say(
        "time to done: BackgroundTasks "
        f"{statistics.median(results.done_ms['background']):.1f} ms, ARQ "
        f"{statistics.median(results.done_ms['queue']):.1f} ms"
    )
    crash_jobs = 5 if options.smoke else 20
    results.crash["background"] = _crash_background(stack, crash_jobs)
    results.crash["queue"], _ = _crash_queue(
        stack, claims, noop1, crash_jobs, options.crash_recovery_wait_s
    )
    _say(f"crash: {results.crash}")


# --- memory soak --------------------------------------------------------------------------------


# One worker confirmed 200-300 orders/s in the queue phase, with the machine to itself; beside
# an API serving reads flat out it kept up with 50/s (backlog 2-15) and not with 100/s
# (bench/findings.md), so the queue phase's figure is no guide to what is sustainable here.
SOAK_DEFAULT_ORDER_RATE = 50.0


async def _feed_orders(
    url: str, seed: Seed, rate: float, seconds: float, counts: dict[str, int]
) -> None:
    """POST /v1/orders at a fixed rate, on a schedule that does not wait for the answers.

    Open loop, as wrk2 paces: order n is sent at start + n / rate whatever happened to order
    n - 1, so a slow API or worker shows as a backlog, not as a lower rate. At most 64 requests
    are in flight; an order due while they all are is counted as `late` and not sent.
    """
    import httpx

    in_flight: set[asyncio.Task[None]] = set()
    headers = {"Authorization": f"Bearer {seed.api_key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as client:

        async def place(n: int) -> None:
            body = {
                "customer": {"email": f"soak{n}@soak.example.com", "name": f"Soak {n}"},
                "items": [{"product_id": seed.hot_first + n % HOT_PRODUCTS, "quantity": 1}],
            }
            try:
                response = await client.post("/v1/orders", json=body)
                counts["placed" if response.status_code == 201 else "errors"] += 1
            except httpx.HTTPError:
                counts["errors"] += 1

        started = time.monotonic()
        for n in range(int(rate * seconds)):
            delay = started + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(in_flight) >= 64:
                counts["late"] += 1
                continue
            task = asyncio.create_task(place(n))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        await asyncio.gather(*in_flight)


def _soak(stack: Stack, seed: Seed, options: Options, results: Results) -> None:
    """RSS of the API and the worker under steady load, sampled from warm-up to the end.

    Orders arrive at a fixed rate below what one worker confirms (SOAK_DEFAULT_ORDER_RATE), so the
    worker keeps up and its memory is that of a steady state, not of a growing backlog; reads
    (a product, an order, a page) fill the rest of the API's capacity. The backlog (orders
    placed, confirmation not yet received) is sampled with the memory, to show it stays flat.
    """
    import subprocess
    import threading

    asyncio.run(_settle(stack))
    api = stack.server("api_soak", PRODUCTION_SERVER, "api.main:app", 1, PRODUCTION_POOL)
    worker = next((c for c in stack.children if c.name == "worker1"), None)
    if worker is None:  # the queue phase did not run
        worker = stack.worker("worker1", "worker.Settings")
        _wait_for_log(worker, "worker_started")
    rate = options.soak_order_rate or SOAK_DEFAULT_ORDER_RATE
    _say(f"soak: {rate:.0f} orders/s, reads on the rest of the API's capacity")
    wrk = load.ensure_wrk()
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
        target=lambda: asyncio.run(_feed_orders(api.url, seed, rate, options.soak_s, counts)),
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
        drained_s = asyncio.run(_wait_until(all_mailed, 120, "the soak's emails")) - load_stopped
    lines = [line for line in output.splitlines() if line.startswith("BENCH_JSON ")]
    summary = json.loads(lines[-1].removeprefix("BENCH_JSON ")) if lines else {}
    # Warm-up: the first tenth of the soak (pools filled, caches and allocator arenas grown).
    # Warm-up: the first fifth. The worker's RSS grows for one to two minutes (pools, kept SMTP
    # connections, allocator arenas) and is then flat (bench/findings.md), so a ten-minute soak
    # judges the remaining eight.
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


# --- the run ------------------------------------------------------------------------------------


def run(stack: Stack, options: Options) -> Results:
    results = Results()
    miss_window = 2_000 if options.smoke else 30_000
    _say("seeding: a client, 100 hot products, products for cache misses, orders to read")
    seed = asyncio.run(
        _seed(
            stack.postgres.url, miss_window * (options.rounds + 1), 50 if options.smoke else 1_000
        )
    )
    scenarios = [s for s in _scenarios(seed, options, miss_window) if options.wants(s.name)]
    needed = {scenario.server for scenario in scenarios}
    if options.wants("queues"):
        needed.add("claims")
    servers = _start_servers(stack, needed)
    results.titles = {scenario.name: scenario.title for scenario in scenarios}
    _run_http(stack, servers, scenarios, options, results)
    # A phase that fails is reported as such; the figures of the others are still worth having.
    if options.wants("queues"):
        try:
            _run_queues(stack, servers, seed, options, results)
        except Exception as exc:
            results.notes.append(f"The queue phase failed: {exc!r} (see the run directory's logs).")
            _say(results.notes[-1])
            return results
    if options.soak_s > 0 and options.wants("soak"):
        _say(f"soak: {options.soak_s:g} s on one API process and one worker")
        try:
            _soak(stack, seed, options, results)
        except Exception as exc:
            results.notes.append(f"The soak failed: {exc!r} (see the run directory's logs).")
            _say(results.notes[-1])
    return results
