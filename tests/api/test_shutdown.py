"""SIGTERM to the API process: requests in flight are answered, new connections are refused,
and the app's lifespan shutdown runs; under Granian with the shipped flags and under uvicorn."""

import asyncio
import signal
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg
import httpx
import pytest

from shop.catalogue.schemas import ProductPublic
from tests.app_fixtures import bearer, wait_for
from tests.processes import ApiProcess, Server, backends_waiting_for_a_lock, writes_held

MakeProduct = Callable[..., Coroutine[Any, Any, ProductPublic]]

# Granian's limit on the drain is among the shipped flags (api.server); uvicorn's is given here.
DRAIN_LIMIT_ARGS = {Server.GRANIAN: (), Server.UVICORN: ("--timeout-graceful-shutdown", "10")}
# uvicorn re-raises the signal once it has shut down cleanly, so it ends "killed" by it;
# Granian exits 0.
CLEAN_EXIT_STATUS = {Server.GRANIAN: 0, Server.UVICORN: -signal.SIGTERM}


@pytest.mark.slow
@pytest.mark.parametrize("server", Server)
async def test_sigterm_drains_requests_in_flight_refuses_new_ones_and_closes_the_pools(
    server: Server,
    client_key: str,
    make_product: MakeProduct,
    db: asyncpg.Pool,
    spawn_api: Callable[..., ApiProcess],
) -> None:
    product = await make_product(stock=5)
    api = spawn_api(*DRAIN_LIMIT_ARGS[server], server=server)
    await api.wait_until_ready()
    body = {
        "customer": {"email": "ada@example.com", "name": "Ada Lovelace"},
        "items": [{"product_id": product.id, "quantity": 1}],
    }

    async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        # The order's insert waits for our lock on the table.
        async with writes_held(db, "orders"):
            in_flight = asyncio.create_task(
                client.post("/v1/orders", json=body, headers=bearer(client_key))
            )

            async def waiting() -> bool:
                return await backends_waiting_for_a_lock(db, "orders-api") == 1

            await wait_for(waiting, timeout_s=10)
            api.signal(signal.SIGTERM)

            async def refusing() -> bool:
                try:
                    async with httpx.AsyncClient(base_url=api.url, timeout=2) as fresh:
                        await fresh.get("/healthz")
                # Refused outright, or (a connection the kernel had already accepted before the
                # listening socket closed) closed unanswered: either way nothing was served.
                except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError):
                    return True
                return False

            await wait_for(refusing, timeout_s=10)
            assert not in_flight.done()

        response = await in_flight

    assert response.status_code == 201, response.text
    assert await asyncio.to_thread(api.wait, 20) == CLEAN_EXIT_STATUS[server], api.output()
    # Logged by the lifespan once the Postgres and Redis pools are closed.
    assert [event["event"] for event in api.log_events()][-1] == "api_stopped"
    assert await db.fetchval("SELECT count(*) FROM orders") == 1
