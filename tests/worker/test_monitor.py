"""Each worker's heartbeat, counts and metrics, seen from outside as an operator sees them."""

import asyncio
import json
import signal
import time
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg
import httpx
import pytest
from arq.connections import ArqRedis
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis
from typer.testing import CliRunner

from devstack.services import LOOPBACK, free_port
from kit.settings import Settings
from ops.queue import last_hour, outcomes_last_hour
from ordersctl.main import app as ordersctl
from shop.catalogue.schemas import ProductPublic
from shop.jobs.keys import STATS_TTL_S, JobOutcome
from tests.app_fixtures import bearer, wait_for
from tests.processes import WorkerProcess
from worker.monitor import WorkerMonitor, observed

MakeProduct = Callable[..., Coroutine[Any, Any, ProductPublic]]
SpawnWorker = Callable[..., WorkerProcess]

# Short, so that the test waits about a second for a killed worker to drop out.
FAST_HEARTBEAT = {"WORKER_HEARTBEAT_INTERVAL_S": "0.2", "WORKER_HEARTBEAT_TTL_S": "1"}


async def ctl(*args: str) -> tuple[int, Any]:
    result = await asyncio.to_thread(CliRunner().invoke, ordersctl, [*args, "--json"])
    return result.exit_code, json.loads(result.stdout)


async def live_workers() -> list[dict[str, Any]]:
    _, workers = await ctl("workers")
    assert isinstance(workers, list)
    return workers


async def place_and_wait_for_email(
    api: httpx.AsyncClient, client_key: str, make_product: MakeProduct, db: asyncpg.Pool
) -> int:
    product = await make_product(stock=5)
    response = await api.post(
        "/v1/orders",
        json={
            "customer": {"email": "ada@example.com", "name": "Ada"},
            "items": [{"product_id": product.id, "quantity": 1}],
        },
        headers=bearer(client_key),
    )
    assert response.status_code == 201
    order_id: int = response.json()["id"]

    async def emailed() -> bool:
        return bool(
            await db.fetchval(
                "SELECT confirmation_sent_at IS NOT NULL FROM orders WHERE id = $1", order_id
            )
        )

    await wait_for(emailed, timeout_s=30)
    return order_id


@pytest.mark.slow
async def test_a_killed_worker_drops_out_of_ordersctl_workers_within_its_heartbeat_ttl(
    spawn_worker: SpawnWorker,
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    db: asyncpg.Pool,
) -> None:
    doomed = spawn_worker(**FAST_HEARTBEAT)
    survivor = spawn_worker(**FAST_HEARTBEAT)
    await doomed.wait_until_started()
    await survivor.wait_until_started()

    async def both_live() -> bool:
        return len(await live_workers()) == 2

    await wait_for(both_live, timeout_s=10)
    await place_and_wait_for_email(api, client_key, make_product, db)

    async def jobs_counted() -> bool:
        return sum(worker["done"] for worker in await live_workers()) == 2

    await wait_for(jobs_counted, timeout_s=5)
    healthy, _ = await ctl("health")
    doomed.kill()

    async def only_survivor() -> bool:
        return [worker["pid"] for worker in await live_workers()] == [survivor.pid]

    await wait_for(only_survivor, timeout_s=5)
    [remaining] = await live_workers()
    assert remaining["heartbeat_age_s"] < 1
    assert remaining["running"] == 0
    assert healthy == 0
    # A clean stop removes the worker's key at once; with none left, health fails.
    survivor.signal(signal.SIGTERM)
    assert survivor.wait(30) == 0
    assert await live_workers() == []
    unhealthy, report = await ctl("health")
    assert unhealthy == 2
    assert report["checks"]["workers"] == {"ok": False, "detail": "0 live (at least 1 wanted)"}


@pytest.mark.slow
async def test_a_worker_serves_its_own_metrics(
    spawn_worker: SpawnWorker,
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    db: asyncpg.Pool,
) -> None:
    port = free_port()
    worker = spawn_worker(WORKER_METRICS_PORT=str(port), **FAST_HEARTBEAT)
    await worker.wait_until_started()
    await place_and_wait_for_email(api, client_key, make_product, db)

    async with httpx.AsyncClient(base_url=f"http://{LOOPBACK}:{port}", timeout=5) as client:

        async def scrape() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
            text = (await client.get("/metrics")).text
            return {
                (sample.name, frozenset(sample.labels.items())): sample.value
                for family in text_string_to_metric_families(text)
                for sample in family.samples
            }

        async def both_jobs_timed() -> bool:
            samples = await scrape()
            return all(
                samples.get(
                    (
                        "orders_job_duration_seconds_count",
                        frozenset({"function": function, "outcome": "complete"}.items()),
                    )
                )
                == 1
                for function in ("reserve_inventory", "send_confirmation")
            )

        await wait_for(both_jobs_timed, timeout_s=5)
        samples = await scrape()

    assert samples[("orders_db_pool_connections", frozenset({"role": "worker"}.items()))] >= 1


async def test_jobs_finishing_together_are_counted_by_function_and_outcome(
    settings: Settings, arq_redis: ArqRedis
) -> None:
    monitor = WorkerMonitor(arq_redis, settings)

    await asyncio.gather(
        monitor.record("reserve_inventory", JobOutcome.COMPLETE, 0.01),
        monitor.record("reserve_inventory", JobOutcome.COMPLETE, 0.01),
        monitor.record("send_confirmation", JobOutcome.RETRIED, 0.01),
        monitor.record("send_confirmation", JobOutcome.FAILED, 0.01),
    )

    assert await outcomes_last_hour(arq_redis, settings.queue_name) == {
        "reserve_inventory": {"complete": 2},
        "send_confirmation": {"failed": 1, "retried": 1},
    }
    assert (monitor.done, monitor.retried, monitor.failed) == (2, 1, 1)
    [key] = await arq_redis.keys(f"{settings.queue_name}:stats:*")
    assert 0 < await arq_redis.ttl(key) <= STATS_TTL_S


async def test_a_cancelled_job_is_still_counted_as_cancelled(
    settings: Settings, arq_redis: ArqRedis
) -> None:
    monitor = WorkerMonitor(arq_redis, settings)
    started = asyncio.Event()

    async def hang(ctx: dict[str, Any]) -> None:
        started.set()
        await asyncio.sleep(60)

    running = asyncio.create_task(observed("reserve_inventory", hang)({"monitor": monitor}))
    await started.wait()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running

    assert await outcomes_last_hour(arq_redis, settings.queue_name) == {
        "reserve_inventory": {"cancelled": 1}
    }
    assert (monitor.running, monitor.failed) == (0, 1)


async def test_a_count_redis_cannot_take_is_lost_without_failing_the_job(
    settings: Settings,
) -> None:
    unreachable = Redis(host=LOOPBACK, port=free_port(), socket_connect_timeout=1)
    monitor = WorkerMonitor(unreachable, settings)

    async def succeed(ctx: dict[str, Any]) -> str:
        return "confirmed"

    try:
        result = await observed("reserve_inventory", succeed)({"monitor": monitor})
    finally:
        await unreachable.aclose()

    assert result == "confirmed"
    assert monitor.done == 1


async def test_each_minute_of_the_last_hour_has_its_outcomes_and_mean_run_time(
    settings: Settings, arq_redis: ArqRedis
) -> None:
    monitor = WorkerMonitor(arq_redis, settings)
    if time.time() % 60 > 58:  # the runs and the read in one minute
        await asyncio.sleep(2.5)

    await asyncio.gather(
        monitor.record("reserve_inventory", JobOutcome.COMPLETE, 0.010),
        monitor.record("reserve_inventory", JobOutcome.COMPLETE, 0.030),
        monitor.record("send_confirmation", JobOutcome.FAILED, 0.050),
    )

    hour = await last_hour(arq_redis, settings.queue_name)
    assert len(hour.minutes) == 60
    assert hour.minutes[0].minute < hour.minutes[-1].minute
    now = hour.minutes[-1]
    assert now.outcomes == {"complete": 2, "failed": 1}
    assert now.mean_run_s == pytest.approx(0.030, abs=0.001)
    assert all(minute.outcomes == {} for minute in hour.minutes[:-1])
    assert hour.by_function == await outcomes_last_hour(arq_redis, settings.queue_name)
