"""POST /v1/orders at a fixed rate, on a schedule that does not wait for the answers."""

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx

MAX_IN_FLIGHT = 64


async def feed_orders(
    url: str,
    api_key: str,
    rate: float,
    seconds: float,
    body: Callable[[int], dict[str, Any]],
    counts: dict[str, int],
    sent_at: dict[int, float] | None = None,
) -> None:
    """Places order `body(n)` at start + n / rate, for n = 0, 1, ... until `seconds` are over.

    Open loop, as wrk2 paces: order n is sent whatever happened to order n - 1, so a slow API or
    worker shows as a backlog or as latency, not as a lower rate. At most MAX_IN_FLIGHT requests
    are in flight; an order due while they all are is counted as `late` and not sent. `counts`
    gets `placed`, `errors` and `late`; `sent_at`, when given, the wall-clock time each placed
    order's request was sent, by order id.
    """
    for name in ("placed", "errors", "late"):
        counts.setdefault(name, 0)
    in_flight: set[asyncio.Task[None]] = set()
    headers = {"Authorization": f"Bearer {api_key}"}
    limits = httpx.Limits(max_connections=MAX_IN_FLIGHT, max_keepalive_connections=MAX_IN_FLIGHT)
    async with httpx.AsyncClient(
        base_url=url, headers=headers, timeout=10, limits=limits
    ) as client:

        async def place(n: int) -> None:
            sent = time.time()
            try:
                response = await client.post("/v1/orders", json=body(n))
            except httpx.HTTPError:
                counts["errors"] += 1
                return
            if response.status_code != 201:
                counts["errors"] += 1
                return
            counts["placed"] += 1
            if sent_at is not None:
                sent_at[int(response.json()["id"])] = sent

        started = time.monotonic()
        for n in range(int(rate * seconds)):
            delay = started + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(in_flight) >= MAX_IN_FLIGHT:
                counts["late"] += 1
                continue
            task = asyncio.create_task(place(n))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        await asyncio.gather(*in_flight)
