"""Webhooks: how fast one worker delivers, and what delivering costs the order pipeline.

One API process, one worker (`arq worker.Settings`) and smtp-sink as in the flash sale, and a
fast receiver on loopback (bench.webhook_receiver: 204 at once, in its own process).

- Deliveries per worker: with the worker idle, events for WEBHOOK_MAX_IN_FLIGHT endpoints (the
  worker's cap in all) and then for one endpoint (its per-endpoint cap) are written in one
  transaction with their outbox rows, as the order path writes them; the worker delivers them.
  The rate is from the first try to the last, as `webhook_attempts` records them.
- The cost to the pipeline: orders placed for webhook_pipeline_s by wrk while the worker
  confirms and emails them, with no endpoint, then with one endpoint taking every event type
  (order.created and order.confirmed: two deliveries an order), alternating, two runs of each.
  Each run ends when every order is emailed and every delivery delivered. The worker may send
  that one endpoint as many requests at once as it sends in all
  (WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT = WEBHOOK_MAX_IN_FLIGHT), so that the figure is what
  delivering costs the worker, not the cap one receiver is held to.
"""

import asyncio
import statistics
import time
from typing import Any

import asyncpg

from bench import load
from bench import repository as bench_repo
from bench import seed as seeding
from bench.options import Options
from bench.phases.common import say, settle
from bench.phases.pipeline import (
    PipelineStack,
    drain,
    fetch,
    last_order_id,
    order_times,
    per_second,
    wait_while_any,
    wrk_figures,
)
from bench.results import Results
from bench.stack import BIN, Child, Stack, wait_for_port
from devstack.services import LOOPBACK, free_port
from kit.settings import Settings
from shop.clients.service import create_client
from shop.jobs.relay import NOTIFY_CHANNEL
from shop.models import WebhookEventType
from shop.webhooks import repository as webhooks_repo
from shop.webhooks import signing

PRODUCTS = 5
ALL_EVENTS = [event.value for event in WebhookEventType]
DRAIN_LIMIT_S = 600.0
# Plain http to loopback, which production refuses.
ENV = {"WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true"}


class _HookStack(PipelineStack):
    def __init__(self, stack: Stack, api_key: str) -> None:
        super().__init__(stack, "webhooks", ENV)
        self.api_key = api_key
        port = free_port()
        self.receiver: Child = stack.child(
            "webhook_receiver", [str(BIN / "python"), "-m", "bench.webhook_receiver", str(port)]
        )
        wait_for_port(port, self.receiver)
        self.receiver_url = f"http://{LOOPBACK}:{port}/hooks"

    def pids(self) -> dict[str, int]:
        return {**super().pids(), "receiver": self.receiver.pid}

    def orders(self, tag: str, first: int) -> str:
        return load.one_line_orders(self.api_key, tag, first, PRODUCTS)


async def _seed(dsn: str) -> tuple[str, int, int, int]:
    """A client, its products, and one order: (api key, client id, first product, order id)."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        async with conn.transaction():
            new = await create_client(conn, "webhooks", is_admin=False)
            ids = await seeding.products(
                conn, "HOOKS", "Webhook product", PRODUCTS, stock=seeding.PLENTY
            )
            order = await seeding.insert_orders(
                conn, new.client.id, dict.fromkeys(ids, 1000), 1, "hooks"
            )
    finally:
        await conn.close()
    return new.api_key, new.client.id, ids[0], order[0]


async def _set_endpoints(dsn: str, client_id: int, url: str, count: int, events: list[str]) -> None:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        async with conn.transaction():
            await bench_repo.delete_webhook_endpoints(conn, client_id)
            for n in range(count):
                await webhooks_repo.insert_endpoint(
                    conn,
                    client_id=client_id,
                    url=f"{url}/{n}",
                    events=events,
                    secret=signing.generate_secret(),
                )
    finally:
        await conn.close()


async def _deliveries(dsn: str, order_id: int, events: int, limit_s: float) -> dict[str, Any]:
    """Writes `events` events of the order for the worker to deliver to the client's endpoints,
    wakes its relay, and waits until they are delivered."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        after = await bench_repo.last_webhook_attempt_id(conn)
        queued = 0
        async with conn.transaction():
            # One event a statement: insert_order_events writes one per order it is given.
            for _ in range(events):
                queued += await webhooks_repo.insert_order_events(
                    conn, {order_id: WebhookEventType.ORDER_CREATED}
                )
        await conn.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)
    finally:
        await conn.close()
    await _wait_for_deliveries(dsn, limit_s)
    figures = await fetch(dsn, lambda c: bench_repo.webhook_delivery_figures(c, after))
    span = (figures.last or 0.0) - (figures.first or 0.0)
    return {
        "deliveries": queued,
        "delivered": figures.delivered,
        "tries": figures.tries,
        "seconds": round(span, 2),
        "per_s": round(per_second(figures.delivered, span), 1),
    }


def _delivery_rate(
    hs: _HookStack, client_id: int, order_id: int, endpoints: int, events: int
) -> dict[str, Any]:
    dsn = hs.stack.postgres.url
    asyncio.run(_set_endpoints(dsn, client_id, hs.receiver_url, endpoints, ["order.created"]))
    cpu_before = hs.cpu()
    figures = asyncio.run(_deliveries(dsn, order_id, events, DRAIN_LIMIT_S))
    cpu_after = hs.cpu()
    cpu = {k: round(cpu_after[k] - cpu_before[k], 2) for k in cpu_before}
    return {
        "endpoints": endpoints,
        **figures,
        "cpu_s": cpu,
        "worker_cpu_ms_per_delivery": round(cpu["worker"] * 1000 / max(1, figures["delivered"]), 3),
    }


async def _wait_for_deliveries(dsn: str, limit_s: float) -> float:
    return await wait_while_any(
        dsn, bench_repo.pending_webhook_deliveries, limit_s, "deliveries were still pending"
    )


def _pipeline_run(
    hs: _HookStack, client_id: int, first: int, options: Options, hooked: bool, n: int
) -> dict[str, Any]:
    dsn = hs.stack.postgres.url
    asyncio.run(_set_endpoints(dsn, client_id, hs.receiver_url, 1 if hooked else 0, ALL_EVENTS))
    after_order = asyncio.run(last_order_id(dsn))
    after_attempt = asyncio.run(fetch(dsn, bench_repo.last_webhook_attempt_id))
    cpu_before = hs.cpu()
    start = time.time()
    run = hs.wrk_start(
        f"orders-{'hooked' if hooked else 'plain'}-{n}",
        hs.orders(f"hooks-{n}-{hooked}", first),
        options.webhook_pipeline_s,
        options.flash_order_connections,
    ).finish()
    asyncio.run(drain(dsn, client_id, after_order, DRAIN_LIMIT_S))
    done = asyncio.run(_wait_for_deliveries(dsn, DRAIN_LIMIT_S))
    cpu_after = hs.cpu()
    times = asyncio.run(order_times(dsn, client_id, after_order))
    emailed = [o.emailed for o in times if o.emailed is not None]
    deliveries = asyncio.run(
        fetch(dsn, lambda c: bench_repo.webhook_delivery_figures(c, after_attempt))
    )
    end = max([*emailed, done if hooked else 0.0])
    cpu = {k: round(cpu_after[k] - cpu_before[k], 2) for k in cpu_before}
    return {
        "webhooks": hooked,
        "orders": wrk_figures(run),
        "accepted": len(times),
        "emailed": len(emailed),
        "delivered": deliveries.delivered,
        "tries": deliveries.tries,
        # Orders all the way through (emailed and, with webhooks, every event delivered) per
        # second, from the first POST to the last of it.
        "processed_per_s": round(per_second(len(emailed), end - start), 1),
        "cpu_s": cpu,
        "worker_cpu_ms_per_order": round(cpu["worker"] * 1000 / max(1, len(emailed)), 3),
    }


def run(stack: Stack, options: Options, results: Results) -> None:
    stack.stop_children()
    asyncio.run(settle(stack))
    api_key, client_id, first, order_id = asyncio.run(_seed(stack.postgres.url))
    hs = _HookStack(stack, api_key)
    hs.start_worker(ENV)
    events = 200 if options.smoke else 3_000
    caps = Settings()
    figures: dict[str, Any] = {"webhook_max_in_flight": caps.webhook_max_in_flight}
    say(f"webhooks: {events} deliveries to {caps.webhook_max_in_flight} endpoints, then to 1")
    figures["many_endpoints"] = _delivery_rate(
        hs, client_id, order_id, caps.webhook_max_in_flight, events // caps.webhook_max_in_flight
    )
    figures["one_endpoint"] = _delivery_rate(hs, client_id, order_id, 1, events // 3)
    say(f"webhooks: orders for {options.webhook_pipeline_s:g} s, without and with an endpoint")
    hs.stop_worker()
    hs.start_worker({**ENV, "WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT": str(caps.webhook_max_in_flight)})
    runs = [
        _pipeline_run(hs, client_id, first, options, hooked, n)
        for n in range(2)
        for hooked in (False, True)
    ]
    figures["pipeline_runs"] = runs
    hs.stop_worker()
    hs.api.stop()
    asyncio.run(_set_endpoints(stack.postgres.url, client_id, hs.receiver_url, 0, ALL_EVENTS))
    plain = statistics.median(r["processed_per_s"] for r in runs if not r["webhooks"])
    hooked = statistics.median(r["processed_per_s"] for r in runs if r["webhooks"])
    figures["processed_with_vs_without"] = round(hooked / plain, 3) if plain else None
    results.webhooks = figures
    say(
        f"webhooks: {figures['many_endpoints']['per_s']}/s to many endpoints, "
        f"{figures['one_endpoint']['per_s']}/s to one; pipeline with/without "
        f"{figures['processed_with_vs_without']}"
    )
