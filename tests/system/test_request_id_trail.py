"""One request id, followed from the API's log to the logs of the jobs the request caused.

Both run as real processes writing structlog JSON lines, as in production.
"""

from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg
import httpx
import pytest

from kit.settings import Settings
from shop.catalogue.schemas import ProductPublic
from tests.app_fixtures import bearer, wait_for
from tests.processes import ApiProcess, WorkerProcess

MakeProduct = Callable[..., Coroutine[Any, Any, ProductPublic]]


@pytest.mark.slow
async def test_the_request_id_of_an_order_is_in_the_api_log_and_in_every_job_log_it_causes(
    spawn_api: Callable[..., ApiProcess],
    spawn_worker: Callable[..., WorkerProcess],
    settings: Settings,
    client_key: str,
    make_product: MakeProduct,
    db: asyncpg.Pool,
) -> None:
    product = await make_product(stock=5)
    # Every request counts as slow here, so the API writes one log line per request.
    api = spawn_api(SLOW_REQUEST_S="0.000001")
    worker = spawn_worker()
    await api.wait_until_ready()
    await worker.wait_until_started()
    async with httpx.AsyncClient(base_url=api.url, timeout=5) as client:
        response = await client.post(
            "/v1/orders",
            json={
                "customer": {"email": "ada@example.com", "name": "Ada"},
                "items": [{"product_id": product.id, "quantity": 1}],
            },
            headers={**bearer(client_key), "X-Request-ID": "trail-42"},
        )
    assert response.status_code == 201
    order_id = response.json()["id"]

    async def emailed() -> bool:
        return bool(
            await db.fetchval(
                "SELECT confirmation_sent_at IS NOT NULL FROM orders WHERE id = $1", order_id
            )
        )

    await wait_for(emailed, timeout_s=30)

    api_lines = [line for line in api.log_events() if line.get("request_id") == "trail-42"]
    job_lines = [line for line in worker.log_events() if line.get("request_id") == "trail-42"]
    assert [(line["event"], line["path"]) for line in api_lines] == [("slow_request", "/v1/orders")]
    events = {(line["event"], line["job_id"]) for line in job_lines}
    assert ("inventory_reserved", f"reserve_inventory:{order_id}") in events
    assert ("confirmation_sent", f"send_confirmation:{order_id}") in events
    assert all(line["order_id"] == order_id for line in job_lines)
