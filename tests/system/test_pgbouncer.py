"""The API, a worker and ordersctl through a real pgbouncer in transaction pooling.

Every pooled connection goes through pgbouncer (DATABASE_POOL_MODE=transaction), while the
relay's LISTEN goes to Postgres itself (DATABASE_LISTEN_URL): the sweep is set to a minute, so
orders that settle within seconds were delivered on the NOTIFYs the API sent through pgbouncer.
"""

import asyncio
import json
import os
import subprocess
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg
import httpx
import pytest

from devstack.services import PgBouncerService, PostgresService
from shop.catalogue.schemas import ProductPublic
from shop.jobs.relay import LISTENER_APPLICATION_NAME
from tests.app_fixtures import bearer, wait_for
from tests.processes import BIN, REPO_ROOT, ApiProcess, WorkerProcess

MakeProduct = Callable[..., Coroutine[Any, Any, ProductPublic]]

pytestmark = pytest.mark.slow


@pytest.fixture
def through_pgbouncer(pgbouncer: PgBouncerService, pg_service: PostgresService) -> dict[str, str]:
    return {
        "DATABASE_URL": pgbouncer.url,
        "DATABASE_POOL_MODE": "transaction",
        "DATABASE_LISTEN_URL": pg_service.url,
    }


async def test_orders_flow_through_pgbouncer_and_the_relay_listens_on_postgres_itself(
    through_pgbouncer: dict[str, str],
    spawn_api: Callable[..., ApiProcess],
    spawn_worker: Callable[..., WorkerProcess],
    db: asyncpg.Pool,
    mail_sink: Any,
    client_key: str,
    make_product: MakeProduct,
) -> None:
    product = await make_product(stock=1_000)
    api = spawn_api(**through_pgbouncer)
    worker = spawn_worker(OUTBOX_SWEEP_INTERVAL_S="60", **through_pgbouncer)
    await api.wait_until_ready()
    await worker.wait_until_started()

    async with httpx.AsyncClient(base_url=api.url, timeout=10) as client:

        async def place() -> int:
            response = await client.post(
                "/v1/orders",
                json={
                    "customer": {"email": "ada@example.com", "name": "Ada Lovelace"},
                    "items": [{"product_id": product.id, "quantity": 1}],
                },
                headers=bearer(client_key),
            )
            assert response.status_code == 201, response.text
            order_id: int = response.json()["id"]
            return order_id

        # More orders at once than pgbouncer has server connections (4).
        placed = [
            order for _ in range(4) for order in await asyncio.gather(*(place() for _ in range(16)))
        ]

    async def settled() -> bool:
        done = await db.fetchval(
            "SELECT count(*) FROM orders WHERE status = 'confirmed'"
            " AND confirmation_sent_at IS NOT NULL"
        )
        return bool(done == len(placed))

    try:
        await wait_for(settled, timeout_s=30)
    except TimeoutError:
        print(worker.output()[-20_000:])
        raise
    assert await db.fetchval("SELECT stock FROM products WHERE id = $1", product.id) == 1_000 - 64
    assert len(mail_sink.messages) == len(placed)
    assert await db.fetchval("SELECT count(*) FROM dead_jobs") == 0
    listeners = await db.fetch(
        "SELECT query FROM pg_stat_activity WHERE application_name = $1",
        LISTENER_APPLICATION_NAME,
    )
    assert [row["query"] for row in listeners] == ['LISTEN "outbox"']
    for process in (api, worker):
        assert "prepared statement" not in process.output()


def test_ordersctl_works_through_pgbouncer(through_pgbouncer: dict[str, str]) -> None:
    def ordersctl(*args: str) -> Any:
        result = subprocess.run(
            [str(BIN / "ordersctl"), *args, "--json"],
            env={**os.environ, **through_pgbouncer},
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    created = ordersctl("clients", "create", "shop")
    listed = ordersctl("clients", "list")
    revoked = ordersctl("clients", "revoke", str(created["id"]))

    assert [row["name"] for row in listed] == ["shop"]
    assert revoked == {"client_id": created["id"], "revoked": True}
