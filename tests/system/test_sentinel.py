"""A Redis primary, a replica and three sentinels; the primary killed under load.

The API processes and the worker reach Redis only through the sentinels (REDIS_SENTINELS; the
host of REDIS_URL is one nothing listens on). Orders are placed while the primary is killed
with -9; a sentinel promotes the replica; the processes follow without a restart. Jobs the
primary had not yet copied to its replica are lost with it, and the relay hands them over again
(OUTBOX_REDELIVER_AFTER_S), so the books add up as after a Redis restart (tests/system/books.py).
The catalogue's invalidation reaches the other API process through the new primary, and
`ordersctl workers` finds the worker's heartbeat there.
"""

import asyncio
import shutil
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from devstack.services import (
    LOOPBACK,
    RedisService,
    SentinelService,
    ensure_binaries,
    free_port,
)
from kit.settings import Settings, get_settings
from shop.catalogue.schemas import ProductPublic
from tests.app_fixtures import bearer, wait_for
from tests.ordersctl.fixtures import ctl_json
from tests.processes import ApiProcess, WorkerProcess
from tests.system.books import WORKER_ENV, Books, check_the_books, placing, settle

MakeProduct = Callable[..., Coroutine[Any, Any, ProductPublic]]

pytestmark = pytest.mark.slow

MASTER = "orders"


@dataclass
class SentinelStack:
    primary: RedisService
    replica: RedisService
    sentinels: list[SentinelService]

    @property
    def env(self) -> dict[str, str]:
        return {
            "REDIS_SENTINELS": ",".join(sentinel.address for sentinel in self.sentinels),
            "REDIS_SENTINEL_MASTER": MASTER,
            # Its database number is used; its host never is, with sentinels.
            "REDIS_URL": f"redis://{LOOPBACK}:{free_port()}/0",
        }


@pytest.fixture
def sentinel_stack() -> Iterator[SentinelStack]:
    ensure_binaries(sentinel=True)
    root = Path(tempfile.mkdtemp(prefix="orders-tests-sentinel-"))
    primary = RedisService(root / "primary", free_port())
    replica = RedisService(root / "replica", free_port(), replica_of=(LOOPBACK, primary.port))
    sentinels = [
        SentinelService(root / f"sentinel-{n}", free_port(), master=(LOOPBACK, primary.port))
        for n in range(3)
    ]
    started: list[RedisService | SentinelService] = []
    try:
        for service in (primary, replica, *sentinels):
            started.append(service)
            service.start()
        # Sentinels find the replica and each other through the primary, within a few seconds.
        for sentinel in sentinels:
            sentinel.wait_until_sees(replicas=1, other_sentinels=2)
        yield SentinelStack(primary, replica, sentinels)
    finally:
        for service in reversed(started):
            service.kill()
        shutil.rmtree(root, ignore_errors=True)


async def test_a_killed_primary_is_replaced_and_nothing_is_lost(
    sentinel_stack: SentinelStack,
    spawn_api: Callable[..., ApiProcess],
    spawn_worker: Callable[..., WorkerProcess],
    db: asyncpg.Pool,
    mail_sink: Any,
    settings: Settings,
    client_key: str,
    admin_key: str,
    make_product: MakeProduct,
) -> None:
    env = sentinel_stack.env
    # A long local tier: were an invalidation lost, the other process would show the old
    # product for this long.
    api_env = {**env, "CATALOGUE_LOCAL_TTL_S": "30"}
    writer, reader = spawn_api(**api_env), spawn_api(**api_env)
    worker = spawn_worker(**WORKER_ENV, **env)
    # Three processes start at once on a shared machine: more time than one alone needs.
    for api in (writer, reader):
        await api.wait_until_ready(timeout_s=60)
    await worker.wait_until_started(timeout_s=60)
    products = [await make_product(stock=stock) for stock in (100, 100, 400)]
    edited = products[-1]

    async with (
        httpx.AsyncClient(base_url=writer.url, timeout=10) as to_writer,
        httpx.AsyncClient(base_url=reader.url, timeout=10) as to_reader,
    ):
        books = Books(to_writer, client_key, {product.id: product.stock for product in products})
        async with placing(books, 4, every_s=0.05):

            async def some_accepted() -> bool:
                return len(books.accepted) >= 30

            await wait_for(some_accepted, timeout_s=30)
            sentinel_stack.primary.kill()
            killed_at = time.monotonic()

            async def promoted() -> bool:
                return all(
                    sentinel.master_address() == (LOOPBACK, sentinel_stack.replica.port)
                    for sentinel in sentinel_stack.sentinels
                )

            await wait_for(promoted, timeout_s=30)
            promoted_s = time.monotonic() - killed_at
            await asyncio.sleep(2)  # orders keep coming after the promotion

        # Both API processes subscribe again, to the new primary.
        async def resubscribed() -> bool:
            return all(
                api.output().count('"cache_listener_subscribed"') >= 2 for api in (writer, reader)
            )

        await wait_for(resubscribed, timeout_s=30)
        followed_s = time.monotonic() - killed_at
        path = f"/v1/products/{edited.id}"
        before = await to_reader.get(path, headers=bearer(client_key))
        patched = await to_writer.patch(
            path, json={"name": "Renamed after the failover"}, headers=bearer(admin_key)
        )
        after = await to_reader.get(path, headers=bearer(client_key))

    assert before.status_code == 200
    assert patched.status_code == 200, patched.text
    assert after.json()["name"] == "Renamed after the failover"
    await settle(books, db, [worker])
    settled_s = time.monotonic() - killed_at
    counts = await check_the_books(books, db, mail_sink, settings)
    assert worker.process is not None
    assert worker.process.poll() is None, "the worker did not ride out the failover"

    # ordersctl finds the worker's heartbeat on the new primary.
    async def listed() -> bool:
        assert worker.process is not None
        return worker.process.pid in {row["pid"] for row in await ctl_json("workers")}

    with pytest.MonkeyPatch.context() as environment:
        for name, value in env.items():
            environment.setenv(name, value)
        get_settings.cache_clear()
        try:
            await wait_for(listed, timeout_s=30)
        finally:
            get_settings.cache_clear()
    redelivered = worker.output().count('"outbox_redelivered"')
    claims_cut_off = worker.output().count('"job_claim_interrupted"')
    print(
        f"\nSentinel failover: replica promoted {promoted_s:.1f} s after the kill, both APIs "
        f"subscribed to it {followed_s:.1f} s after; all settled "
        f"{settled_s:.1f} s after the kill; {counts}; "
        f"redelivery sweeps that found lost jobs: {redelivered}; job claims the failover cut "
        f"off, left for the next poll: {claims_cut_off}"
    )
