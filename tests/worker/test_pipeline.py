"""From accepted order to reserved stock and one confirmation email, on the real services."""

import asyncio
import signal
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg
import httpx
import pytest

from kit.redis import REDIS_UNAVAILABLE_ERRORS
from kit.settings import Settings
from shop.catalogue.schemas import ProductPublic
from shop.fulfilment.confirmation import send_confirmations
from shop.fulfilment.inventory import reserve_inventory
from shop.fulfilment.mail import confirmation_message_id
from shop.jobs.relay import OutboxRelay
from shop.orders import repository as orders_repo
from tests.app_fixtures import JobRunner, bearer, stock_of, wait_for
from tests.processes import WorkerProcess
from worker.context import WorkerContext

MakeProduct = Callable[..., Coroutine[Any, Any, ProductPublic]]


def order_body(product_id: int, quantity: int, email: str = "ada@example.com") -> dict[str, Any]:
    return {
        "customer": {"email": email, "name": "Ada Lovelace"},
        "items": [{"product_id": product_id, "quantity": quantity}],
    }


async def place(api: httpx.AsyncClient, key: str, product_id: int, quantity: int) -> int:
    response = await api.post(
        "/v1/orders", json=order_body(product_id, quantity), headers=bearer(key)
    )
    assert response.status_code == 201, response.text
    order_id: int = response.json()["id"]
    return order_id


async def test_an_order_is_confirmed_and_one_email_is_sent(
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    jobs: JobRunner,
    db: asyncpg.Pool,
    mail_sink: Any,
    settings: Settings,
) -> None:
    product = await make_product(stock=5, price_cents=1_250)
    order_id = await place(api, client_key, product.id, 2)

    await jobs.run_until_idle()

    order = await db.fetchrow(
        "SELECT status, confirmed_at, confirmation_sent_at FROM orders WHERE id = $1", order_id
    )
    assert order["status"] == "confirmed"
    assert order["confirmation_sent_at"] is not None
    assert await stock_of(db, product.id) == 3
    assert len(mail_sink.messages) == 1
    message = mail_sink.messages[0]
    assert message["To"] == "ada@example.com"
    assert message["Message-ID"] == confirmation_message_id(order_id, settings.message_id_domain)
    assert f"order {order_id}" in message["Subject"]
    assert "25.00 EUR" in message.get_content()


async def test_running_the_jobs_again_changes_nothing(
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    jobs: JobRunner,
    db: asyncpg.Pool,
    mail_sink: Any,
    worker_context: WorkerContext,
) -> None:
    product = await make_product(stock=5)
    order_id = await place(api, client_key, product.id, 2)
    await jobs.run_until_idle()

    again = await reserve_inventory(
        worker_context.pool, worker_context.settings, worker_context.cache, [order_id]
    )
    resent = await send_confirmations(
        worker_context.pool,
        worker_context.settings,
        worker_context.mailer,
        worker_context.redis,
        [order_id],
    )

    assert again.done == {order_id: "confirmed"}
    assert resent.done == {order_id: False}
    assert await stock_of(db, product.id) == 3
    assert len(mail_sink.messages) == 1


async def test_a_batchs_confirmations_are_sent_together_and_noted_in_one_statement(
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    jobs: JobRunner,
    db: asyncpg.Pool,
    mail_sink: Any,
    worker_context: WorkerContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    product = await make_product(stock=10)
    order_ids = [await place(api, client_key, product.id, 1) for _ in range(4)]
    await reserve_inventory(
        worker_context.pool, worker_context.settings, worker_context.cache, order_ids
    )
    noted_before = await db.fetchval(
        "UPDATE orders SET confirmation_sent_at = now() - interval '1 hour' WHERE id = $1"
        " RETURNING confirmation_sent_at",
        order_ids[0],
    )
    statements: list[list[int]] = []
    mark = orders_repo.mark_confirmations_sent

    async def recorded(conn: asyncpg.Connection, ids: list[int]) -> None:
        statements.append(sorted(ids))
        await mark(conn, ids)

    monkeypatch.setattr(orders_repo, "mark_confirmations_sent", recorded)

    outcomes = await send_confirmations(
        worker_context.pool,
        worker_context.settings,
        worker_context.mailer,
        worker_context.redis,
        order_ids,
    )

    assert outcomes.done == {order_ids[0]: False, **dict.fromkeys(order_ids[1:], True)}
    assert statements == [order_ids[1:]]
    assert len(mail_sink.messages) == 3
    rows = await db.fetch(
        "SELECT id, confirmation_sent_at FROM orders WHERE id = any($1::bigint[]) ORDER BY id",
        order_ids,
    )
    sent_at = {row["id"]: row["confirmation_sent_at"] for row in rows}
    assert sent_at[order_ids[0]] == noted_before
    assert all(sent_at[order_id] is not None for order_id in order_ids[1:])


async def test_an_order_is_rejected_when_stock_is_short(
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    jobs: JobRunner,
    db: asyncpg.Pool,
    mail_sink: Any,
) -> None:
    plenty = await make_product(stock=10)
    scarce = await make_product(stock=1)
    response = await api.post(
        "/v1/orders",
        json={
            "customer": {"email": "ada@example.com", "name": "Ada"},
            "items": [
                {"product_id": plenty.id, "quantity": 2},
                {"product_id": scarce.id, "quantity": 3},
            ],
        },
        headers=bearer(client_key),
    )
    order_id = response.json()["id"]

    await jobs.run_until_idle()

    order = (await api.get(f"/v1/orders/{order_id}", headers=bearer(client_key))).json()
    assert order["status"] == "rejected"
    assert order["rejected_at"] is not None
    assert order["rejection_reason"] == (
        f"Not enough stock for product {scarce.id} (requested 3, available 1)."
    )
    # All or nothing: the line that was in stock was not taken either.
    assert await stock_of(db, plenty.id) == 10
    assert await stock_of(db, scarce.id) == 1
    assert mail_sink.messages == []


async def test_100_concurrent_orders_never_oversell_stock_of_30(
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    jobs: JobRunner,
    db: asyncpg.Pool,
    mail_sink: Any,
) -> None:
    product = await make_product(stock=30)

    order_ids = await asyncio.gather(*(place(api, client_key, product.id, 1) for _ in range(100)))
    await jobs.run_until_idle()

    statuses = dict(
        await db.fetch(
            "SELECT status, count(*) FROM orders WHERE id = any($1::bigint[]) GROUP BY status",
            order_ids,
        )
    )
    sold = await db.fetchval(
        "SELECT coalesce(sum(l.quantity), 0) FROM order_lines l JOIN orders o ON o.id = l.order_id"
        " WHERE o.status = 'confirmed' AND l.product_id = $1",
        product.id,
    )
    assert statuses == {"confirmed": 30, "rejected": 70}
    assert sold == 30
    assert await stock_of(db, product.id) == 0
    assert len(mail_sink.messages) == 30
    assert len({message["Message-ID"] for message in mail_sink.messages}) == 30


async def test_orders_are_accepted_while_redis_is_down_and_processed_when_it_returns(
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    jobs: JobRunner,
    db: asyncpg.Pool,
    redis_service: Any,
    mail_sink: Any,
) -> None:
    product = await make_product(stock=5)
    redis_service.stop()
    try:
        order_id = await place(api, client_key, product.id, 1)
        with pytest.raises(REDIS_UNAVAILABLE_ERRORS):
            await jobs.relay.deliver_pending()
        pending = await db.fetchval("SELECT count(*) FROM outbox WHERE delivered_at IS NULL")
        assert pending == 1
    finally:
        redis_service.start()

    await jobs.run_until_idle()

    assert await db.fetchval("SELECT status FROM orders WHERE id = $1", order_id) == "confirmed"
    assert len(mail_sink.messages) == 1


async def test_the_relay_delivers_promptly_on_commit_without_waiting_for_a_sweep(
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    db: asyncpg.Pool,
    worker_context: WorkerContext,
    arq_redis: Any,
    settings: Settings,
) -> None:
    product = await make_product(stock=5)
    # With an hour between sweeps, only the NOTIFY sent at commit can wake the relay.
    relay = OutboxRelay(
        worker_context.pool,
        arq_redis,
        settings.model_copy(update={"outbox_sweep_interval_s": 3600}),
    )
    relay_task = asyncio.create_task(relay.run())
    try:
        await asyncio.sleep(0.5)  # the relay has swept once and is now waiting
        order_id = await place(api, client_key, product.id, 1)

        async def delivered() -> bool:
            return bool(
                await db.fetchval(
                    "SELECT delivered_at IS NOT NULL FROM outbox WHERE order_id = $1", order_id
                )
            )

        await wait_for(delivered, timeout_s=5)
    finally:
        relay_task.cancel()
        await asyncio.gather(relay_task, return_exceptions=True)
    assert await arq_redis.zscore(settings.queue_name, f"reserve_inventory:{order_id}") is not None


async def test_arq_worker_settings_runs_the_real_worker_process(
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    db: asyncpg.Pool,
    mail_sink: Any,
    spawn_worker: Callable[..., WorkerProcess],
) -> None:
    product = await make_product(stock=5)
    order_id = await place(api, client_key, product.id, 1)
    worker = spawn_worker(LOG_FORMAT="json")

    async def emailed() -> bool:
        return bool(
            await db.fetchval(
                "SELECT confirmation_sent_at IS NOT NULL FROM orders WHERE id = $1", order_id
            )
        )

    await wait_for(emailed, timeout_s=30)
    worker.signal(signal.SIGTERM)

    assert worker.wait(30) == 0, worker.output()
    assert len(mail_sink.messages) == 1
    assert "worker_started" in worker.output()
