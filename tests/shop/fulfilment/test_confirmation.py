"""Sending a batch's confirmation emails: each once, by one job at a time."""

from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg
import httpx

from kit.errors import PermanentJobError
from kit.settings import Settings
from shop.catalogue.schemas import ProductPublic
from shop.fulfilment.confirmation import send_confirmations
from shop.fulfilment.inventory import reserve_inventory
from shop.jobs.keys import confirmation_claim_key
from tests.app_fixtures import bearer
from worker.context import WorkerContext

MakeProduct = Callable[..., Coroutine[Any, Any, ProductPublic]]


async def confirmed_orders(
    api: httpx.AsyncClient, key: str, product: ProductPublic, worker: WorkerContext, count: int
) -> list[int]:
    order_ids = []
    for n in range(count):
        response = await api.post(
            "/v1/orders",
            json={
                "customer": {"email": f"customer-{n}@example.com", "name": "Ada"},
                "items": [{"product_id": product.id, "quantity": 1}],
            },
            headers=bearer(key),
        )
        assert response.status_code == 201, response.text
        order_ids.append(response.json()["id"])
    await reserve_inventory(worker.pool, worker.settings, worker.cache, order_ids)
    return order_ids


async def send(worker: WorkerContext, order_ids: list[int], **options: Any) -> Any:
    return await send_confirmations(
        worker.pool, worker.settings, worker.mailer, worker.redis, order_ids, **options
    )


async def test_a_batch_sends_each_confirmation_once_and_a_rerun_sends_nothing(
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    worker_context: WorkerContext,
    mail_sink: Any,
    db: asyncpg.Pool,
) -> None:
    product = await make_product(stock=10)
    order_ids = await confirmed_orders(api, client_key, product, worker_context, 6)
    cancelled = order_ids.pop()
    await db.execute("UPDATE orders SET status = 'cancelled' WHERE id = $1", cancelled)

    outcomes = await send(worker_context, [*order_ids, cancelled])
    again = await send(worker_context, [*order_ids, cancelled])

    assert outcomes.done == {**dict.fromkeys(order_ids, True), cancelled: False}
    assert again.done == dict.fromkeys([*order_ids, cancelled], False)
    assert sorted(message["To"] for message in mail_sink.messages) == [
        f"customer-{n}@example.com" for n in range(5)
    ]
    assert await db.fetchval(
        "SELECT count(*) FROM orders WHERE confirmation_sent_at IS NOT NULL"
    ) == len(order_ids)


async def test_an_order_whose_email_another_job_is_sending_is_left_to_that_job(
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    worker_context: WorkerContext,
    settings: Settings,
    mail_sink: Any,
) -> None:
    product = await make_product(stock=10)
    busy, free = await confirmed_orders(api, client_key, product, worker_context, 2)
    redis = worker_context.redis
    await redis.set(confirmation_claim_key(settings.queue_name, busy), "send_confirmation:other")

    outcomes = await send(worker_context, [busy, free], claimant="send_confirmation:this")

    assert outcomes.done == {busy: False, free: True}
    assert [message["To"] for message in mail_sink.messages] == ["customer-1@example.com"]
    # This job's claim is gone with it; the other job's is left alone.
    assert await redis.get(confirmation_claim_key(settings.queue_name, free)) is None
    assert await redis.get(confirmation_claim_key(settings.queue_name, busy)) == (
        b"send_confirmation:other"
    )


async def test_a_jobs_next_try_takes_up_its_own_claims(
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    worker_context: WorkerContext,
    settings: Settings,
    mail_sink: Any,
) -> None:
    product = await make_product(stock=10)
    [order_id] = await confirmed_orders(api, client_key, product, worker_context, 1)
    # Left by the job's try that died, or whose release did not reach Redis.
    key = confirmation_claim_key(settings.queue_name, order_id)
    await worker_context.redis.set(key, "send_confirmation:batch-7", px=15_000)

    outcomes = await send(worker_context, [order_id], claimant="send_confirmation:batch-7")

    assert outcomes.done == {order_id: True}
    assert len(mail_sink.messages) == 1
    assert await worker_context.redis.get(key) is None


async def test_one_refused_recipient_or_missing_order_fails_alone(
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    worker_context: WorkerContext,
    mail_sink: Any,
) -> None:
    product = await make_product(stock=10)
    order_ids = await confirmed_orders(api, client_key, product, worker_context, 3)
    mail_sink.refuse_recipient("customer-1@example.com")
    missing = order_ids[-1] + 1000

    outcomes = await send(worker_context, [*order_ids, missing])

    assert outcomes.done == {order_ids[0]: True, order_ids[2]: True}
    assert set(outcomes.failed) == {order_ids[1], missing}
    assert "550" in repr(outcomes.failed[order_ids[1]])
    assert isinstance(outcomes.failed[missing], PermanentJobError)
    assert len(mail_sink.messages) == 2
