"""Delivering order events to a real HTTP receiver on loopback: signed as Standard Webhooks says
(verified with the `standardwebhooks` package), retried with the same webhook-id until the
receiver answers 2xx, capped per endpoint so that a hanging receiver does not hold up orders."""

import asyncio
import itertools
import json
import ssl
import subprocess
import time
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from arq.connections import ArqRedis
from standardwebhooks.webhooks import Webhook

from kit.settings import Settings
from shop.catalogue.schemas import ProductPublic
from shop.webhooks import delivery
from shop.webhooks.delivery import Outcome, WebhookSender
from tests.app_fixtures import bearer, wait_for
from tests.webhook_fixtures import Receiver, pipeline, running_receiver, running_worker
from worker.webhooks import queue_overdue_webhooks

MakeProduct = Callable[..., Coroutine[Any, Any, ProductPublic]]
ALL_EVENTS = ["order.created", "order.confirmed", "order.rejected", "order.cancelled"]


async def register(
    api: httpx.AsyncClient, key: str, url: str, events: list[str] = ALL_EVENTS
) -> dict[str, Any]:
    response = await api.post(
        "/v1/webhook-endpoints", json={"url": url, "events": events}, headers=bearer(key)
    )
    assert response.status_code == 201, response.text
    endpoint: dict[str, Any] = response.json()
    return endpoint


async def place(api: httpx.AsyncClient, key: str, product_id: int, quantity: int = 1) -> int:
    response = await api.post(
        "/v1/orders",
        json={
            "customer": {"email": "ada@example.com", "name": "Ada"},
            "items": [{"product_id": product_id, "quantity": quantity}],
        },
        headers=bearer(key),
    )
    assert response.status_code == 201, response.text
    order_id: int = response.json()["id"]
    return order_id


async def attempts(api: httpx.AsyncClient, key: str, endpoint_id: int) -> list[dict[str, Any]]:
    response = await api.get(
        f"/v1/webhook-endpoints/{endpoint_id}/deliveries?limit=100", headers=bearer(key)
    )
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


async def pending_deliveries(db: asyncpg.Pool) -> int:
    count: int = await db.fetchval(
        "SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'"
    )
    return count


def verified(secret: str, request: Any) -> dict[str, Any]:
    payload: dict[str, Any] = Webhook(secret).verify(request.body, request.headers)
    return payload


async def test_an_orders_events_are_delivered_signed_as_standard_webhooks(
    hook_api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    settings: Settings,
    db: asyncpg.Pool,
) -> None:
    product = await make_product(stock=5)
    async with running_receiver() as receiver, pipeline(settings) as runner:
        endpoint = await register(hook_api, client_key, receiver.url)
        order_id = await place(hook_api, client_key, product.id)

        await runner.run_until_idle()

    assert len(receiver.received) == 2
    events = [verified(endpoint["secret"], request) for request in receiver.received]
    assert sorted(event["type"] for event in events) == ["order.confirmed", "order.created"]
    for request, event in zip(receiver.received, events, strict=True):
        assert request.headers["webhook-id"] == event["id"]
        assert event["id"].startswith("evt_")
        assert event["data"]["id"] == order_id
        assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 60
        assert request.headers["content-type"] == "application/json"
    confirmed = next(event for event in events if event["type"] == "order.confirmed")
    order = (await hook_api.get(f"/v1/orders/{order_id}", headers=bearer(client_key))).json()
    assert confirmed["data"] == {**order, "confirmation_sent_at": None}

    log = await attempts(hook_api, client_key, endpoint["id"])
    assert len(log) == 2
    assert {entry["status_code"] for entry in log} == {200}
    assert {entry["delivery_status"] for entry in log} == {"delivered"}
    assert all(entry["next_attempt_at"] is None and entry["error"] is None for entry in log)
    assert await pending_deliveries(db) == 0


async def test_an_endpoint_gets_only_the_events_it_asked_for_and_only_its_clients(
    hook_api: httpx.AsyncClient,
    client_key: str,
    other_client_key: str,
    make_product: MakeProduct,
    settings: Settings,
) -> None:
    product = await make_product(stock=5)
    async with running_receiver() as receiver, pipeline(settings) as runner:
        endpoint = await register(hook_api, client_key, receiver.url, ["order.confirmed"])
        await place(hook_api, other_client_key, product.id)
        order_id = await place(hook_api, client_key, product.id)

        await runner.run_until_idle()

    events = [verified(endpoint["secret"], request) for request in receiver.received]
    assert [(event["type"], event["data"]["id"]) for event in events] == [
        ("order.confirmed", order_id)
    ]


async def test_a_receiver_that_is_down_gets_the_events_when_it_returns_with_the_same_id(
    hook_api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    settings: Settings,
    db: asyncpg.Pool,
) -> None:
    product = await make_product(stock=5)
    receiver = Receiver(status=503)
    endpoint = await register(hook_api, client_key, receiver.url, ["order.created"])
    async with pipeline(settings) as runner, running_worker(runner):
        order_id = await place(hook_api, client_key, product.id)

        # Down: the connection is refused, for a while.
        await wait_for(lambda: _failed_attempts(db, at_least=3))
        # Back, but answering 503 for a while.
        await receiver.start()
        try:
            await wait_for(lambda: _attempts_answered(db, 503, at_least=2))
            receiver.status = 200
            await wait_for(lambda: _no_pending(db))
        finally:
            await receiver.stop()

    event_id = await db.fetchval(
        "SELECT public_id FROM webhook_events WHERE order_id = $1", order_id
    )
    assert set(receiver.ids()) == {event_id}
    bodies = {request.body for request in receiver.received}
    assert len(bodies) == 1, "every try sends the same body"
    assert verified(endpoint["secret"], receiver.received[-1])["data"]["id"] == order_id
    log = await attempts(hook_api, client_key, endpoint["id"])
    newest, *older = log
    assert newest["status_code"] == 200
    assert newest["delivery_status"] == "delivered"
    assert {entry["event_id"] for entry in log} == {event_id}
    refused = [entry for entry in older if entry["status_code"] is None]
    unavailable = [entry for entry in older if entry["status_code"] == 503]
    assert len(refused) >= 3
    assert len(unavailable) >= 2
    assert all(entry["error"] for entry in refused)
    assert all(entry["next_attempt_at"] > entry["attempted_at"] for entry in older)


async def _failed_attempts(db: asyncpg.Pool, at_least: int) -> bool:
    count: int = await db.fetchval("SELECT count(*) FROM webhook_attempts")
    return count >= at_least


async def _attempts_answered(db: asyncpg.Pool, status_code: int, at_least: int) -> bool:
    count: int = await db.fetchval(
        "SELECT count(*) FROM webhook_attempts WHERE status_code = $1", status_code
    )
    return count >= at_least


async def _attempts_timed_out(db: asyncpg.Pool, at_least: int) -> bool:
    count: int = await db.fetchval(
        "SELECT count(*) FROM webhook_attempts WHERE error LIKE 'no answer within%'"
    )
    return count >= at_least


async def _no_pending(db: asyncpg.Pool) -> bool:
    return await pending_deliveries(db) == 0


async def test_first_tries_go_to_the_queue_together_as_one_job(
    hook_api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    settings: Settings,
    db: asyncpg.Pool,
) -> None:
    product = await make_product(stock=5)
    async with running_receiver() as receiver, pipeline(settings) as runner:
        endpoint = await register(hook_api, client_key, receiver.url, ["order.created"])
        orders = [await place(hook_api, client_key, product.id) for _ in range(3)]
        deliveries = [r["id"] for r in await db.fetch("SELECT id FROM webhook_deliveries")]

        assert await runner.relay.deliver_pending() == 6
        queued = [
            job.decode() for job in await runner.context.redis.zrange(settings.queue_name, 0, -1)
        ]
        await runner.run_queued()

    hooks = [job for job in queued if job.startswith("deliver_webhook:")]
    assert len(hooks) == 1
    assert "batch-" in hooks[0]
    assert len(receiver.received) == 3
    log = await attempts(hook_api, client_key, endpoint["id"])
    assert sorted(entry["delivery_id"] for entry in log) == sorted(deliveries)
    assert {entry["delivery_status"] for entry in log} == {"delivered"}
    received = {verified(endpoint["secret"], r)["data"]["id"] for r in receiver.received}
    assert received == set(orders)


async def test_a_job_sends_an_endpoint_nothing_more_once_a_try_gets_no_answer(
    hook_api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    settings: Settings,
    db: asyncpg.Pool,
) -> None:
    product = await make_product(stock=10)
    receiver = Receiver()  # not started: connections are refused
    endpoint = await register(hook_api, client_key, receiver.url, ["order.created"])
    async with pipeline(settings) as runner:
        for _ in range(6):
            await place(hook_api, client_key, product.id)
        tries = [(r["id"], 0) for r in await db.fetch("SELECT id FROM webhook_deliveries")]
        context = runner.context
        batch = await delivery.deliver_many(context.pool, context.settings, context.webhooks, tries)

    assert {result.outcome for result in batch.results.values()} == {Outcome.RETRYING}
    log = await attempts(hook_api, client_key, endpoint["id"])
    assert len(log) == 6
    not_sent = [entry for entry in log if entry["error"].startswith("not sent: another try")]
    refused = [entry for entry in log if entry not in not_sent]
    # The per-endpoint cap (2) is how many requests could be under way when the first failed.
    assert 1 <= len(refused) <= settings.webhook_max_in_flight_per_endpoint
    assert len(not_sent) == 6 - len(refused)
    assert all(entry["latency_ms"] == 0 for entry in not_sent)
    # Every one of them is retried with the same backoff as a try that was sent.
    assert all(entry["delivery_status"] == "pending" for entry in log)
    assert all(entry["next_attempt_at"] > entry["attempted_at"] for entry in log)
    assert await db.fetchval("SELECT min(attempts) FROM webhook_deliveries") == 1


async def test_a_receiver_that_hangs_is_retried_while_orders_keep_being_confirmed(
    hook_api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    settings: Settings,
    db: asyncpg.Pool,
) -> None:
    product = await make_product(stock=100)
    orders = 12
    async with (
        running_receiver(hanging=True) as receiver,
        pipeline(settings, webhook_max_in_flight_per_endpoint=1, webhook_max_in_flight=2) as runner,
    ):
        endpoint = await register(hook_api, client_key, receiver.url)
        # Four job slots; each order and each of its confirmation emails needs one too.
        async with running_worker(runner, max_jobs=4):
            started = time.monotonic()
            order_ids = [await place(hook_api, client_key, product.id) for _ in range(orders)]

            async def all_confirmed() -> bool:
                confirmed: int = await db.fetchval(
                    "SELECT count(*) FROM orders WHERE id = any($1::bigint[])"
                    " AND status = 'confirmed' AND confirmation_sent_at IS NOT NULL",
                    order_ids,
                )
                return confirmed == orders

            await wait_for(all_confirmed, timeout_s=30)
            confirmed_after_s = time.monotonic() - started
            # Every order confirmed and emailed while the receiver held its deliveries up.
            assert await pending_deliveries(db) > 0
            # Tries that timed out are recorded, and tried again.
            await wait_for(lambda: _attempts_timed_out(db, at_least=2))
            hung = len(receiver.received)

            receiver.release()
            await wait_for(lambda: _no_pending(db), timeout_s=60)

    # 24 deliveries, one at a time, each held 1 s while hanging: far longer than the orders took.
    assert confirmed_after_s < 12, confirmed_after_s
    assert hung >= 1
    # One request to the endpoint at a time, never more (the cap is 1): no two overlap.
    spans = await db.fetch(
        "SELECT attempted_at AS start,"
        " attempted_at + make_interval(secs => latency_ms / 1000.0) AS finish"
        " FROM webhook_attempts ORDER BY attempted_at"
    )
    for before, after in itertools.pairwise(spans):
        assert after["start"] >= before["finish"] - timedelta(milliseconds=2)
    log = await attempts(hook_api, client_key, endpoint["id"])
    assert {entry["delivery_status"] for entry in log} == {"delivered"}
    delivered_ids = {entry["event_id"] for entry in log if entry["status_code"] == 200}
    assert len(delivered_ids) == 2 * orders


async def test_after_a_rotation_deliveries_verify_with_either_secret(
    hook_api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    settings: Settings,
) -> None:
    product = await make_product(stock=5)
    async with running_receiver() as receiver, pipeline(settings) as runner:
        endpoint = await register(hook_api, client_key, receiver.url, ["order.created"])
        rotated = (
            await hook_api.post(
                f"/v1/webhook-endpoints/{endpoint['id']}/rotate-secret",
                headers=bearer(client_key),
            )
        ).json()
        await place(hook_api, client_key, product.id)

        await runner.run_until_idle()

    (request,) = receiver.received
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    assert verified(endpoint["secret"], request) == verified(rotated["secret"], request)


async def test_a_rotation_older_than_a_day_signs_with_the_new_secret_only(
    hook_api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    settings: Settings,
    db: asyncpg.Pool,
) -> None:
    product = await make_product(stock=5)
    async with running_receiver() as receiver, pipeline(settings) as runner:
        endpoint = await register(hook_api, client_key, receiver.url, ["order.created"])
        rotated = (
            await hook_api.post(
                f"/v1/webhook-endpoints/{endpoint['id']}/rotate-secret",
                headers=bearer(client_key),
            )
        ).json()
        await db.execute(
            "UPDATE webhook_endpoints SET previous_secret_expires_at = now() - interval '1 s'"
        )
        await place(hook_api, client_key, product.id)

        await runner.run_until_idle()

    (request,) = receiver.received
    assert len(request.headers["webhook-signature"].split(" ")) == 1
    verified(rotated["secret"], request)
    with pytest.raises(Exception, match="No matching signature"):
        verified(endpoint["secret"], request)


async def test_the_address_is_checked_again_when_delivering(
    hook_api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    settings: Settings,
) -> None:
    product = await make_product(stock=5)
    async with (
        running_receiver() as receiver,
        # A worker that does not allow private networks, for an endpoint registered where
        # they were allowed (or whose name resolves elsewhere now).
        pipeline(settings, webhook_allow_private_networks=False, webhook_max_age_s=0.5) as runner,
    ):
        endpoint = await register(hook_api, client_key, receiver.url, ["order.created"])
        await place(hook_api, client_key, product.id)

        await runner.run_until_idle()

    assert receiver.received == []
    log = await attempts(hook_api, client_key, endpoint["id"])
    assert log
    assert all(entry["status_code"] is None for entry in log)
    assert all("not sent" in entry["error"] for entry in log)


async def test_a_delivery_failing_past_the_max_age_is_dead_and_disables_its_endpoint_until_enabled(
    hook_api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    settings: Settings,
    db: asyncpg.Pool,
) -> None:
    product = await make_product(stock=5)
    async with (
        running_receiver(status=500) as receiver,
        pipeline(settings, webhook_max_age_s=1.0) as runner,
    ):
        endpoint = await register(hook_api, client_key, receiver.url, ["order.created"])
        await place(hook_api, client_key, product.id)

        await runner.run_until_idle()
        tries = len(receiver.received)
        # Disabled: the next order's event goes nowhere.
        await place(hook_api, client_key, product.id)
        await runner.run_until_idle()
        sent_while_disabled = len(receiver.received) - tries
        log = await attempts(hook_api, client_key, endpoint["id"])
        disabled = await hook_api.get(
            f"/v1/webhook-endpoints/{endpoint['id']}", headers=bearer(client_key)
        )

        receiver.status = 200
        enabled = await hook_api.post(
            f"/v1/webhook-endpoints/{endpoint['id']}/enable", headers=bearer(client_key)
        )
        after = await place(hook_api, client_key, product.id)
        await runner.run_until_idle()

    assert tries >= 2
    assert sent_while_disabled == 0
    assert len(log) == tries
    assert {entry["delivery_status"] for entry in log} == {"dead"}
    assert log[0]["next_attempt_at"] is None
    assert disabled.json()["disabled_at"] is not None
    assert "answered HTTP 500" in disabled.json()["disabled_reason"]
    assert enabled.status_code == 200, enabled.text
    assert enabled.json()["disabled_at"] is None
    assert enabled.json()["disabled_reason"] is None
    assert verified(endpoint["secret"], receiver.received[-1])["data"]["id"] == after
    assert len(receiver.received) == tries + 1
    assert await pending_deliveries(db) == 0


async def test_a_receiver_down_for_30_seconds_gets_every_event_after_it_returns(
    hook_api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    settings: Settings,
    db: asyncpg.Pool,
) -> None:
    product = await make_product(stock=100)
    receiver = Receiver()
    endpoint = await register(hook_api, client_key, receiver.url)
    # Retries as often as production's first few, at most 4 s apart.
    async with (
        pipeline(settings, webhook_retry_backoff_s=1.0, webhook_retry_backoff_cap_s=4.0) as runner,
        running_worker(runner),
    ):
        down_since = time.monotonic()
        orders = [await place(hook_api, client_key, product.id) for _ in range(5)]
        await asyncio.sleep(15)
        orders += [await place(hook_api, client_key, product.id) for _ in range(5)]
        await asyncio.sleep(30 - (time.monotonic() - down_since))
        refused_while_down = await _failed_attempts(db, at_least=20)
        await receiver.start()
        try:
            await wait_for(lambda: _no_pending(db), timeout_s=30)
        finally:
            await receiver.stop()

    events = await db.fetch(
        "SELECT public_id, type FROM webhook_events WHERE order_id = any($1::bigint[])", orders
    )
    assert (
        sorted(event["type"] for event in events)
        == ["order.confirmed"] * 10 + ["order.created"] * 10
    )
    assert refused_while_down
    assert set(receiver.ids()) == {event["public_id"] for event in events}
    for request in receiver.received:
        assert verified(endpoint["secret"], request)["id"] == request.headers["webhook-id"]
    tried = await db.fetch(
        "SELECT e.public_id, count(*) AS tries, bool_or(a.status_code = 200) AS delivered"
        " FROM webhook_attempts AS a JOIN webhook_deliveries AS d ON d.id = a.delivery_id"
        " JOIN webhook_events AS e ON e.id = d.event_id GROUP BY e.public_id"
    )
    assert len(tried) == 20
    assert all(row["delivered"] and row["tries"] >= 2 for row in tried)


async def test_redirects_are_not_followed_and_only_a_few_kib_of_an_answer_are_kept(
    hook_api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    settings: Settings,
    db: asyncpg.Pool,
) -> None:
    product = await make_product(stock=5)
    async with (
        running_receiver(
            status=307, headers={"location": "http://127.0.0.1:9/elsewhere"}, body=b"x" * 10**6
        ) as receiver,
        pipeline(settings, webhook_max_age_s=0.5) as runner,
    ):
        endpoint = await register(hook_api, client_key, receiver.url, ["order.created"])
        await place(hook_api, client_key, product.id)
        await runner.run_until_idle()

    log = await attempts(hook_api, client_key, endpoint["id"])
    assert len(receiver.received) == len(log) >= 1
    assert {entry["status_code"] for entry in log} == {307}
    kept = await db.fetchval("SELECT max(length(response_body)) FROM webhook_attempts")
    assert 0 < kept <= delivery.KEPT_ANSWER_BYTES


async def test_a_delivery_whose_endpoint_was_deleted_ends_without_a_request(
    hook_api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    settings: Settings,
    db: asyncpg.Pool,
) -> None:
    product = await make_product(stock=5)
    async with running_receiver() as receiver, pipeline(settings) as runner:
        endpoint = await register(hook_api, client_key, receiver.url, ["order.created"])
        await place(hook_api, client_key, product.id)
        deleted = await hook_api.delete(
            f"/v1/webhook-endpoints/{endpoint['id']}", headers=bearer(client_key)
        )
        await runner.run_until_idle()

    assert deleted.status_code == 204
    assert receiver.received == []
    assert await db.fetchval("SELECT status FROM webhook_deliveries") == "dead"
    assert await db.fetchval("SELECT count(*) FROM webhook_attempts") == 0


async def test_a_try_that_runs_twice_sends_and_records_once(
    hook_api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    settings: Settings,
    db: asyncpg.Pool,
) -> None:
    product = await make_product(stock=5)
    async with running_receiver() as receiver, pipeline(settings) as runner:
        await register(hook_api, client_key, receiver.url, ["order.created"])
        await place(hook_api, client_key, product.id)
        delivery_id = await db.fetchval("SELECT id FROM webhook_deliveries")
        context = runner.context

        first = await delivery.deliver(
            context.pool, context.settings, context.webhooks, delivery_id, 0
        )
        again = await delivery.deliver(
            context.pool, context.settings, context.webhooks, delivery_id, 0
        )

    assert (first.outcome, again.outcome) == (Outcome.DELIVERED, Outcome.SKIPPED)
    assert len(receiver.received) == 1
    assert await db.fetchval("SELECT count(*) FROM webhook_attempts") == 1


async def test_a_try_that_redis_lost_is_queued_again_by_the_sweep(
    hook_api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    settings: Settings,
    db: asyncpg.Pool,
    redis_service: Any,
    arq_redis: ArqRedis,
) -> None:
    product = await make_product(stock=5)
    async with running_receiver() as receiver, pipeline(settings) as runner:
        await register(hook_api, client_key, receiver.url, ["order.created"])
        await place(hook_api, client_key, product.id)
        await runner.relay.deliver_pending()
        # Redis restarts empty: the queued try is gone; it was due a while ago.
        redis_service.stop()
        redis_service.start()
        await db.execute(
            "UPDATE webhook_deliveries SET next_attempt_at = now() - interval '1 hour'"
        )
        worker = runner.worker()
        ctx = {**worker.ctx, "redis": arq_redis}

        queued = await queue_overdue_webhooks(ctx)
        await worker.main()
        await worker.close()

    assert queued == 1
    assert len(receiver.received) == 1
    assert await pending_deliveries(db) == 0
    payload = json.loads(receiver.received[0].body)
    assert payload["type"] == "order.created"


async def test_a_redelivered_event_is_sent_again_with_the_same_webhook_id(
    hook_api: httpx.AsyncClient,
    client_key: str,
    other_client_key: str,
    make_product: MakeProduct,
    settings: Settings,
) -> None:
    product = await make_product(stock=5)
    async with running_receiver() as receiver, pipeline(settings) as runner:
        endpoint = await register(hook_api, client_key, receiver.url, ["order.created"])
        await place(hook_api, client_key, product.id)
        await runner.run_until_idle()
        (first,) = receiver.received
        event_id = first.headers["webhook-id"]
        path = f"/v1/events/{event_id}/redeliver"

        redelivered = await hook_api.post(path, headers=bearer(client_key))
        not_theirs = await hook_api.post(path, headers=bearer(other_client_key))
        await runner.run_until_idle()

    assert redelivered.status_code == 202, redelivered.text
    assert redelivered.json() == {"event_id": event_id, "deliveries": 1}
    assert not_theirs.status_code == 404
    assert receiver.ids() == [event_id, event_id]
    assert verified(endpoint["secret"], receiver.received[1]) == json.loads(first.body)
    log = await attempts(hook_api, client_key, endpoint["id"])
    assert len({entry["delivery_id"] for entry in log}) == 2


@pytest.fixture(scope="module")
def localhost_certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for `localhost` (PEM certificate and key files)."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return str(cert), str(key)


async def test_https_goes_to_the_checked_address_with_the_urls_host_for_tls_and_host(
    hook_api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    settings: Settings,
    localhost_certificate: tuple[str, str],
) -> None:
    product = await make_product(stock=5)
    trusted = ssl.create_default_context(cafile=localhost_certificate[0])
    async with (
        running_receiver(tls=localhost_certificate) as receiver,
        pipeline(settings) as runner,
    ):
        sender = WebhookSender(runner.context.settings, verify=trusted)
        untrusting = WebhookSender(runner.context.settings)
        await register(hook_api, client_key, receiver.url, ["order.created"])
        await place(hook_api, client_key, product.id)
        context = runner.context
        delivery_id = await context.pool.fetchval("SELECT id FROM webhook_deliveries")
        try:
            refused = await delivery.deliver(
                context.pool, context.settings, untrusting, delivery_id, 0
            )
            accepted = await delivery.deliver(
                context.pool, context.settings, sender, delivery_id, 1
            )
        finally:
            await sender.close()
            await untrusting.close()

    # localhost was resolved and checked, the request went to its address, and the certificate
    # was checked against the name in the URL (not the address), sent as SNI and Host.
    assert refused.outcome is Outcome.RETRYING
    assert accepted.outcome is Outcome.DELIVERED
    assert len(receiver.received) == 1
    assert receiver.received[0].headers["host"] == f"localhost:{receiver.port}"
