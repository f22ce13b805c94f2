"""SIGTERM to the API process: requests in flight are answered, new connections are refused."""

import asyncio
import signal
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg
import httpx
import pytest

from shared.schemas import ProductPublic
from tests.app_fixtures import bearer, wait_for
from tests.processes import ApiProcess, backends_waiting_for_a_lock, row_locked

MakeProduct = Callable[..., Coroutine[Any, Any, ProductPublic]]


@pytest.mark.slow
async def test_sigterm_drains_requests_in_flight_and_refuses_new_ones(
    client_key: str,
    make_product: MakeProduct,
    db: asyncpg.Pool,
    spawn_api: Callable[..., ApiProcess],
) -> None:
    product = await make_product(stock=5)
    server = spawn_api("--timeout-graceful-shutdown", "10")
    await server.wait_until_ready()
    body = {
        "customer": {"email": "ada@example.com", "name": "Ada Lovelace"},
        "items": [{"product_id": product.id, "quantity": 1}],
    }

    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        # The order's line references the product, so its insert waits for our row lock.
        async with row_locked(db, "products", product.id):
            in_flight = asyncio.create_task(
                client.post("/v1/orders", json=body, headers=bearer(client_key))
            )

            async def waiting() -> bool:
                return await backends_waiting_for_a_lock(db, "orders-api") == 1

            await wait_for(waiting, timeout_s=10)
            server.signal(signal.SIGTERM)

            async def refusing() -> bool:
                try:
                    async with httpx.AsyncClient(base_url=server.url, timeout=2) as fresh:
                        await fresh.get("/healthz")
                except httpx.ConnectError:
                    return True
                return False

            await wait_for(refusing, timeout_s=10)
            assert not in_flight.done()

        response = await in_flight

    assert response.status_code == 201, response.text
    # uvicorn re-raises the signal once it has shut down cleanly, so it ends "killed" by it.
    assert await asyncio.to_thread(server.wait, 20) == -signal.SIGTERM
    assert "Application shutdown complete" in server.output()
    assert await db.fetchval("SELECT count(*) FROM orders") == 1
