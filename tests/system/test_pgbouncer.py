"""The API, a worker and ordersctl through a real pgbouncer in transaction pooling.

Every pooled connection goes through pgbouncer (DATABASE_POOL_MODE=transaction), while the
relay's LISTEN goes to Postgres itself (DATABASE_LISTEN_URL): the sweep is five minutes away, so
orders that settle within seconds were delivered on the NOTIFYs the API sent through pgbouncer.
"""

import json
import os
import subprocess
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg
import httpx
import pytest

from devstack.services import PgBouncerService, PostgresService
from kit.settings import Settings
from shop.catalogue.schemas import ProductPublic
from shop.jobs.relay import LISTENER_APPLICATION_NAME
from tests.processes import BIN, REPO_ROOT, ApiProcess, WorkerProcess
from tests.system.books import Books, check_the_books, settle

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
    settings: Settings,
    client_key: str,
    make_product: MakeProduct,
) -> None:
    product = await make_product(stock=1_000)
    api = spawn_api(**through_pgbouncer)
    worker = spawn_worker(OUTBOX_SWEEP_INTERVAL_S="300", **through_pgbouncer)
    # Two processes start at once on a shared machine: more time than one alone needs.
    await api.wait_until_ready(timeout_s=60)
    await worker.wait_until_started(timeout_s=60)

    async with httpx.AsyncClient(base_url=api.url, timeout=10) as client:
        books = Books(client, client_key, {product.id: product.stock})
        # More orders at once than pgbouncer has server connections (4).
        for _ in range(4):
            await books.place_many(16)
    await settle(books, db, [worker])

    counts = await check_the_books(books, db, mail_sink, settings)
    assert counts["accepted"] == 64
    assert counts["confirmed"] == 64
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
