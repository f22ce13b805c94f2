"""Real ARQ jobs in every state, and `ordersctl` run on them as from a shell.

The commands run in a thread (each runs its own event loop, as from a shell) through typer's
CliRunner; the jobs are made by real ARQ: enqueued, deferred, run by a burst worker to completion
or failure, recorded as dead by the real job wrapper, or held running by a row lock.
"""

import asyncio
import json
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis
from click.testing import Result
from typer.testing import CliRunner

from kit.settings import Settings
from ordersctl.main import app as ordersctl
from shop.catalogue.schemas import ProductPublic
from tests.app_fixtures import JobRunner, bearer

MakeProduct = Callable[..., Coroutine[Any, Any, ProductPublic]]

WIDE = {"COLUMNS": "250"}


async def ctl(*args: str) -> Result:
    """Runs `ordersctl ARGS` as a shell would, but in-process: in a thread with its own loop."""
    return await asyncio.to_thread(CliRunner().invoke, ordersctl, list(args), env=WIDE)


async def ctl_json(*args: str, code: int = 0) -> Any:
    result = await ctl(*args, "--json")
    assert result.exit_code == code, result.output
    return json.loads(result.stdout)


async def place(api: httpx.AsyncClient, key: str, product_id: int) -> int:
    response = await api.post(
        "/v1/orders",
        json={
            "customer": {"email": "ada@example.com", "name": "Ada Lovelace"},
            "items": [{"product_id": product_id, "quantity": 1}],
        },
        headers=bearer(key),
    )
    assert response.status_code == 201, response.text
    order_id: int = response.json()["id"]
    return order_id


@dataclass(frozen=True)
class Jobs:
    """Ids of real jobs, one or more in each state."""

    confirmed_order: int
    waiting_order: int
    queued: str
    deferred: str
    complete: list[str]
    dead: str
    failed_unrecorded: str


@pytest.fixture
async def every_state(
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    jobs: JobRunner,
    arq_redis: ArqRedis,
    settings: Settings,
) -> Jobs:
    product = await make_product(stock=10)
    confirmed = await place(api, client_key, product.id)
    await jobs.run_until_idle()  # reserve_inventory and send_confirmation complete

    # An order that does not exist: the job wrapper records it as dead and ARQ keeps the failure.
    # A call ARQ cannot even make fails before the wrapper: failed, not recorded as dead.
    queue = settings.queue_name
    await arq_redis.enqueue_job("reserve_inventory", 999_999, _job_id="reserve_inventory:999999")
    await arq_redis.enqueue_job(
        "send_confirmation", 999_998, customer_email="grace@example.com", _job_id="bad-call"
    )
    await jobs.run_queued()

    # Left waiting: the outbox row of this order is never relayed; its job is queued by hand.
    waiting = await place(api, client_key, product.id)
    await arq_redis.enqueue_job(
        "reserve_inventory", waiting, _job_id=f"reserve_inventory:{waiting}", _queue_name=queue
    )
    await arq_redis.enqueue_job(
        "send_confirmation", confirmed, _job_id="later", _defer_by=3600, _queue_name=queue
    )
    return Jobs(
        confirmed_order=confirmed,
        waiting_order=waiting,
        queued=f"reserve_inventory:{waiting}",
        deferred="later",
        complete=[f"reserve_inventory:{confirmed}", f"send_confirmation:{confirmed}"],
        dead="reserve_inventory:999999",
        failed_unrecorded="bad-call",
    )
