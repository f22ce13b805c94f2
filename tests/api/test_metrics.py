"""`GET /metrics`: Prometheus text whose values follow the requests and jobs that happen.

These run the app in the test process (one process, the default registry); the multiprocess
mode of several server workers (Granian's and uvicorn's) is specified at the end, on real
processes.
"""

import asyncio
import signal
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis
from prometheus_client.parser import text_string_to_metric_families

from kit.settings import Settings
from shop.catalogue.schemas import ProductPublic
from tests.app_fixtures import JobRunner, bearer, wait_for
from tests.processes import ApiProcess, Server, live_gauge_pids

MakeProduct = Callable[..., Coroutine[Any, Any, ProductPublic]]


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(api: httpx.AsyncClient) -> Samples:
    response = await api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_request_latency_is_counted_by_route_template_and_status(
    api: httpx.AsyncClient, client_key: str
) -> None:
    before = await scrape(api)
    for order_id in (123, 456):
        response = await api.get(f"/v1/orders/{order_id}", headers=bearer(client_key))
        assert response.status_code == 404
    await api.get("/no/such/path")
    after = await scrape(api)

    name = "orders_http_request_duration_seconds_count"
    by_route = {"method": "GET", "route": "/v1/orders/{order_id}", "status": "404"}
    assert value(after, name, **by_route) - value(before, name, **by_route) == 2
    unmatched = {"method": "GET", "route": "<unmatched>", "status": "404"}
    assert value(after, name, **unmatched) - value(before, name, **unmatched) == 1
    # One series per route, never one per order.
    assert not any("/v1/orders/123" in dict(labels).get("route", "") for _, labels in after)


async def test_catalogue_cache_hits_and_misses_are_counted(
    api: httpx.AsyncClient, client_key: str, make_product: MakeProduct
) -> None:
    product = await make_product()
    before = await scrape(api)
    for _ in range(3):
        assert (await api.get(f"/v1/products/{product.id}", headers=bearer(client_key))).is_success
    after = await scrape(api)

    name = "orders_catalogue_cache_lookups_total"
    assert value(after, name, result="miss") - value(before, name, result="miss") == 1
    assert value(after, name, result="hit") - value(before, name, result="hit") == 2


async def test_pool_queue_and_outbox_gauges_follow_the_system(
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    arq_redis: ArqRedis,
    settings: Settings,
    jobs: JobRunner,
) -> None:
    product = await make_product(stock=5)
    idle = await scrape(api)
    response = await api.post(
        "/v1/orders",
        json={
            "customer": {"email": "ada@example.com", "name": "Ada"},
            "items": [{"product_id": product.id, "quantity": 1}],
        },
        headers=bearer(client_key),
    )
    assert response.status_code == 201
    await arq_redis.enqueue_job("send_confirmation", 1, _job_id="later", _defer_by=3600)
    waiting = await scrape(api)
    await jobs.relay.deliver_pending()
    delivered = await scrape(api)

    queue = settings.queue_name
    assert value(idle, "orders_db_pool_connections", role="api") >= 1
    assert value(idle, "orders_outbox_pending") == 0
    assert value(waiting, "orders_outbox_pending") == 1
    assert value(waiting, "orders_outbox_lag_seconds") > 0
    assert value(waiting, "orders_queue_jobs", queue=queue, state="deferred") == 1
    assert value(waiting, "orders_queue_jobs", queue=queue, state="queued") == 0
    assert value(delivered, "orders_outbox_pending") == 0
    assert value(delivered, "orders_outbox_lag_seconds") == 0
    assert value(delivered, "orders_queue_jobs", queue=queue, state="queued") == 1
    assert value(delivered, "orders_queue_oldest_due_age_seconds", queue=queue) >= 0


async def test_job_durations_are_counted_by_function_and_outcome(
    api: httpx.AsyncClient, client_key: str, make_product: MakeProduct, jobs: JobRunner
) -> None:
    product = await make_product(stock=5)
    before = await scrape(api)
    response = await api.post(
        "/v1/orders",
        json={
            "customer": {"email": "ada@example.com", "name": "Ada"},
            "items": [{"product_id": product.id, "quantity": 1}],
        },
        headers=bearer(client_key),
    )
    assert response.status_code == 201
    await jobs.run_until_idle()
    after = await scrape(api)

    name = "orders_job_duration_seconds_count"
    for function in ("reserve_inventory", "send_confirmation"):
        labels = {"function": function, "outcome": "complete"}
        assert value(after, name, **labels) - value(before, name, **labels) == 1


async def test_metrics_still_answer_while_redis_is_down(
    api: httpx.AsyncClient, redis_service: Any
) -> None:
    redis_service.stop()
    try:
        samples = await scrape(api)
    finally:
        redis_service.start()

    assert value(samples, "orders_db_pool_connections", role="api") >= 1
    assert not any(name == "orders_queue_jobs" for name, _ in samples)


def metric_files(directory: Path) -> list[Path]:
    return list(directory.glob("*.db"))


@pytest.mark.slow
@pytest.mark.parametrize("server", Server)
async def test_several_api_processes_report_one_sum_and_drop_their_live_gauges_when_stopped(
    server: Server, spawn_api: Callable[..., ApiProcess], tmp_path: Path, settings: Settings
) -> None:
    api = spawn_api("--workers", "2", server=server, PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    await api.wait_until_ready()
    async with httpx.AsyncClient(base_url=api.url, timeout=5) as client:

        async def both_processes_reported() -> bool:
            # Each process records its pool when it starts: two pools of DB_POOL_MIN_SIZE.
            samples = parse((await client.get("/metrics")).text)
            return value(samples, "orders_db_pool_connections", role="api") >= 4

        await wait_for(both_processes_reported, timeout_s=15)
        before = [parse((await client.get("/metrics")).text) for _ in range(3)]
        # New connections each, so the requests spread over both processes.
        for _ in range(20):
            async with httpx.AsyncClient(base_url=api.url, timeout=5) as one_shot:
                assert (await one_shot.get("/healthz")).status_code == 200
        after = [parse((await client.get("/metrics")).text) for _ in range(3)]

    name = "orders_http_request_duration_seconds_count"
    healthz = {"method": "GET", "route": "/healthz", "status": "200"}
    readyz = {"method": "GET", "route": "/readyz", "status": "200"}
    # Whichever process answers the scrape, it reports the requests of both.
    assert {value(samples, name, **healthz) for samples in before} == {0}
    assert {value(samples, name, **healthz) for samples in after} == {20}
    assert all(value(samples, name, **readyz) >= 1 for samples in after)
    assert len(metric_files(tmp_path)) >= 2

    assert len(live_gauge_pids(tmp_path)) == 2
    api.signal(signal.SIGTERM)
    await asyncio.to_thread(api.wait, 20)
    # Each process's lifespan shutdown dropped its pools from the sum, so that a dead process
    # is not counted by the next ones to share the directory.
    assert live_gauge_pids(tmp_path) == set()
