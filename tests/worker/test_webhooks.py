"""A worker process killed with SIGKILL in the middle of a webhook request: the delivery is made
all the same, by another worker, with the same webhook-id."""

import time
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg
import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from kit.settings import Settings
from shop.catalogue.schemas import ProductPublic
from tests.app_fixtures import bearer, wait_for
from tests.processes import WorkerProcess
from tests.webhook_fixtures import Receiver, running_receiver
from worker import tasks
from worker.settings import WorkerSettings

MakeProduct = Callable[..., Coroutine[Any, Any, ProductPublic]]
SpawnWorker = Callable[..., WorkerProcess]


# ARQ runs the job of a dead worker again once its in-progress lock expires: the longest ARQ
# timeout of any job (14 s by default) plus 10 s after it started.
WORKER_ENV = {
    "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
    "WEBHOOK_RETRY_BACKOFF_S": "0.2",
    "LOG_LEVEL": "WARNING",
}


def test_webhook_tries_do_not_make_a_killed_workers_jobs_wait_longer(settings: Settings) -> None:
    timeouts = [function.timeout_s for function in WorkerSettings.functions]
    assert max(timeouts) == tasks.arq_timeout_s(settings)


@pytest.mark.slow
async def test_a_worker_killed_mid_delivery_is_replaced_and_the_event_delivered(
    hook_api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    db: asyncpg.Pool,
    spawn_worker: SpawnWorker,
) -> None:
    product = await make_product(stock=5)
    async with running_receiver(hanging=True) as receiver:
        created = await hook_api.post(
            "/v1/webhook-endpoints",
            json={"url": receiver.url, "events": ["order.created"]},
            headers=bearer(client_key),
        )
        assert created.status_code == 201, created.text
        secret = created.json()["secret"]
        order = await hook_api.post(
            "/v1/orders",
            json={
                "customer": {"email": "ada@example.com", "name": "Ada"},
                "items": [{"product_id": product.id, "quantity": 1}],
            },
            headers=bearer(client_key),
        )
        assert order.status_code == 201

        doomed = spawn_worker(**WORKER_ENV)
        # The request is in flight: the receiver has it and has not answered.
        await wait_for(lambda: _received(receiver, 1), timeout_s=30)
        doomed.kill()
        killed_at = time.monotonic()
        receiver.release()

        spawn_worker(**WORKER_ENV)

        async def delivered() -> bool:
            status: str = await db.fetchval("SELECT status FROM webhook_deliveries")
            return status == "delivered"

        await wait_for(delivered, timeout_s=60)
        recovered_s = time.monotonic() - killed_at

    print(f"\nkill -9 mid-delivery: delivered {recovered_s:.1f} s after the kill")
    assert len(receiver.received) == 2
    first, again = receiver.received
    assert first.headers["webhook-id"] == again.headers["webhook-id"]
    assert first.body == again.body
    Webhook(secret).verify(again.body, again.headers)
    assert await db.fetchval("SELECT count(*) FROM webhook_attempts") == 1


async def _received(receiver: Receiver, at_least: int) -> bool:
    return len(receiver.received) >= at_least
