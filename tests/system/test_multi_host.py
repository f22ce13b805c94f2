"""Every role on a host of its own, and the books kept across a partition, a lost host and a
Redis failover.

The hosts are network namespaces on this machine (tests/system/network.py), on one switch at
10.77.0.0/24; the test process is the client at .1, and so is the SMTP server it reads:

    client .1 (this test; the mail sink) ──▶ lb .10 (nginx, deploy/nginx.conf)
    lb ──▶ api1 .11, api2 .12 (granian, the production command)
    worker1 .21, worker2 .22 (arq worker.Settings)
    db .30: Postgres and pgbouncer (transaction pooling), a sentinel
    redis1 .40: the Redis primary, a sentinel;  redis2 .41: its replica, a sentinel

The replica and the sentinels are on other hosts than the primary, as in a deployment: the
sentinel on the database host is the third vote, so losing either Redis host leaves a majority
to promote the other. The API and the workers reach Postgres through pgbouncer (the relay's
LISTEN directly) and Redis through the sentinels only, as docs/deployment.md deploys them.

Orders are placed through nginx at a modest rate while, one test each, a worker host is cut off
for 10 s (its worker rides it out), every process of a worker host is killed with -9 (and the
host comes back), and the Redis primary is killed so that the sentinels promote the replica.
Afterwards the books (tests/system/books.py): every accepted order confirmed or rejected, stock
that adds up, one confirmation email per confirmed order, nothing dead.
"""

import asyncio
import os
import re
import shutil
import signal
import socket
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devstack.mailsink import MailSink
from devstack.project import REPO_ROOT, alembic_upgrade_head
from devstack.services import (
    PgBouncerService,
    PostgresService,
    RedisService,
    SentinelService,
    ensure_binaries,
    find_nginx,
)
from kit.settings import Settings
from shop.catalogue import repository as products_repo
from shop.catalogue.schemas import ProductCreate
from shop.clients.service import create_client
from tests.app_fixtures import wait_for
from tests.processes import ApiProcess, ChildProcess, WorkerProcess
from tests.services import TRUNCATE_APPLICATION_TABLES
from tests.system.books import WORKER_ENV, Books, check_the_books, placing, settle
from tests.system.network import (
    CLIENT_ADDRESS,
    NETWORK,
    Network,
    namespaces_usable,
    remove_leftovers,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

MASTER = "orders"
API_PORT = 8000
WORKER_METRICS_PORT = 9100
REDIS_PORT = 6379
SENTINEL_PORT = 26379
HOSTS = {
    "lb": 10,
    "api1": 11,
    "api2": 12,
    "worker1": 21,
    "worker2": 22,
    "db": 30,
    "redis1": 40,
    "redis2": 41,
}
SENTINEL_HOSTS = ("db", "redis1", "redis2")
# Orders of 1 to 3 units, about 20 a second for LOAD_S: the first two products run out, so
# that rejections are in the books as well as confirmations.
INITIAL_STOCK = (150, 150, 5_000)
LOAD_S = 25.0
PARTITION_S = 10.0


@dataclass
class Cluster:
    network: Network
    postgres: PostgresService
    redis: dict[str, RedisService]  # host -> its redis-server
    sentinels: list[SentinelService]
    mail: MailSink
    apis: list[ApiProcess]
    workers: dict[str, WorkerProcess]  # host -> its worker
    nginx: ChildProcess

    @property
    def url(self) -> str:
        return f"http://{self.network.hosts['lb']}:{API_PORT}"

    def master_host(self) -> str | None:
        """The host every sentinel names as the master's, if they agree."""
        answers = {sentinel.master_address() for sentinel in self.sentinels}
        if len(answers) != 1 or (address := answers.pop()) is None:
            return None
        by_address = {(redis.host, redis.port): host for host, redis in self.redis.items()}
        return by_address.get(address)


def nginx_config(upstreams: list[str], prefix: Path) -> str:
    """deploy/nginx.conf with these upstreams in place of compose's DNS name, its temporary
    files under `prefix`."""
    shipped = (REPO_ROOT / "deploy" / "nginx.conf").read_text()
    resolver = re.compile(r"^\s*resolver [^;]*;\n", re.MULTILINE)
    server = re.compile(r"^(\s*)server api:8000 resolve;\n", re.MULTILINE)
    assert resolver.search(shipped), "deploy/nginx.conf changed"
    assert server.search(shipped), "deploy/nginx.conf changed"
    config = resolver.sub("", shipped)
    config = server.sub(lambda m: "".join(f"{m[1]}server {up};\n" for up in upstreams), config)
    temporary = "".join(
        f"    {kind}_temp_path {prefix / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return config.replace("http {\n", "http {\n" + temporary + "    access_log off;\n", 1)


def free_port_on(address: str) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        port: int = sock.getsockname()[1]
        return port


Part = ChildProcess | PostgresService | PgBouncerService | RedisService | SentinelService


def _kill_all(parts: list[Part]) -> None:
    for part in reversed(parts):
        if isinstance(part, ChildProcess):
            part.close()
        else:
            part.kill()


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    if reason := namespaces_usable():
        pytest.skip(reason)
    ensure_binaries(pgbouncer=True, sentinel=True, nginx=True)
    remove_leftovers()
    root = Path(tempfile.mkdtemp(prefix="orders-tests-multihost-"))
    # Postgres and pgbouncer run as another user, who must be able to enter it.
    root.chmod(0o711)
    network = Network()
    started: list[Part] = []
    mail: MailSink | None = None
    try:
        network.create()
        for host, number in HOSTS.items():
            network.add(host, number)
        address = network.hosts

        postgres = PostgresService(
            root / "postgres",
            5432,
            fsync=False,
            host=address["db"],
            clients=NETWORK,
            netns=network.netns("db"),
        )
        started.append(postgres)
        postgres.start()
        alembic_upgrade_head({**os.environ, "DATABASE_URL": postgres.url}, capture=True)
        timeout_ms = Settings().db_statement_timeout_ms
        pgbouncer = PgBouncerService(
            root / "pgbouncer",
            6432,
            upstream=(address["db"], postgres.port),
            host=address["db"],
            connect_query=(
                f"SET statement_timeout = {timeout_ms}; "
                f"SET idle_in_transaction_session_timeout = {timeout_ms * 2}"
            ),
            netns=network.netns("db"),
        )
        started.append(pgbouncer)
        pgbouncer.start()

        primary = RedisService(
            root / "redis1", REDIS_PORT, host=address["redis1"], netns=network.netns("redis1")
        )
        replica = RedisService(
            root / "redis2",
            REDIS_PORT,
            host=address["redis2"],
            replica_of=(address["redis1"], REDIS_PORT),
            netns=network.netns("redis2"),
        )
        sentinels = [
            SentinelService(
                root / f"sentinel-{host}",
                SENTINEL_PORT,
                master=(address["redis1"], REDIS_PORT),
                master_name=MASTER,
                host=address[host],
                netns=network.netns(host),
            )
            for host in SENTINEL_HOSTS
        ]
        for service in (primary, replica, *sentinels):
            started.append(service)
            service.start()

        mail = MailSink(root / "mail", free_port_on(CLIENT_ADDRESS), host=CLIENT_ADDRESS)
        mail.start()

        env = {
            **WORKER_ENV,
            "DATABASE_URL": pgbouncer.url,
            "DATABASE_POOL_MODE": "transaction",
            "DATABASE_LISTEN_URL": postgres.url,
            "REDIS_SENTINELS": ",".join(sentinel.address for sentinel in sentinels),
            "REDIS_SENTINEL_MASTER": MASTER,
            # Its database number is used; its host never is, with sentinels.
            "REDIS_URL": f"redis://{address['redis1']}:{REDIS_PORT}/0",
            "SMTP_URL": mail.url,
        }
        apis = [
            ApiProcess(env=env, host=address[host], port=API_PORT, netns=network.netns(host))
            for host in ("api1", "api2")
        ]
        workers = {
            host: WorkerProcess(
                {
                    **env,
                    "WORKER_METRICS_HOST": address[host],
                    "WORKER_METRICS_PORT": str(WORKER_METRICS_PORT),
                },
                netns=network.netns(host),
            )
            for host in ("worker1", "worker2")
        }
        nginx_dir = root / "nginx"
        nginx_dir.mkdir()
        upstreams = [f"{address[host]}:{API_PORT}" for host in ("api1", "api2")]
        (nginx_dir / "nginx.conf").write_text(nginx_config(upstreams, nginx_dir))
        nginx_binary = find_nginx()
        assert nginx_binary is not None
        nginx = ChildProcess(
            [
                nginx_binary,
                "-e",
                "stderr",
                "-p",
                str(nginx_dir),
                "-c",
                str(nginx_dir / "nginx.conf"),
                "-g",
                f"daemon off; pid {nginx_dir / 'nginx.pid'};",
            ],
            netns=network.netns("lb"),
        )
        for process in (*apis, *workers.values(), nginx):
            started.append(process)
            process.start()

        stack = Cluster(
            network,
            postgres,
            {"redis1": primary, "redis2": replica},
            sentinels,
            mail,
            apis,
            workers,
            nginx,
        )
        for sentinel in sentinels:
            sentinel.wait_until_sees(replicas=1, other_sentinels=2)
        yield stack
    finally:
        _kill_all(started)
        if mail is not None:
            mail.stop()
        network.close()
        shutil.rmtree(root, ignore_errors=True)


async def _until_serving(cluster: Cluster) -> None:
    # Five processes start at once on a shared machine: more time than one alone needs.
    for api in cluster.apis:
        await api.wait_until_ready(timeout_s=90)
    for worker in cluster.workers.values():
        await worker.wait_until_started(timeout_s=90)
    async with httpx.AsyncClient(base_url=cluster.url, timeout=2) as client:

        async def through_nginx() -> bool:
            try:
                return (await client.get("/readyz")).status_code == 200
            except httpx.TransportError:
                return False

        await wait_for(through_nginx, timeout_s=30)


@pytest.fixture(scope="module")
async def cluster_db(cluster: Cluster) -> AsyncIterator[asyncpg.Pool]:
    """The test's own pool, straight to Postgres from the client host, once every host
    serves."""
    await _until_serving(cluster)
    pool = await asyncpg.create_pool(cluster.postgres.url, min_size=1, max_size=4)
    assert pool is not None
    yield pool
    await pool.close()


@pytest.fixture
async def books(cluster: Cluster, cluster_db: asyncpg.Pool) -> AsyncIterator[Books]:
    """Every host up and empty, a client key, three products; the client talks to nginx."""
    for host, worker in cluster.workers.items():
        cluster.network.reconnect(host)
        if not worker.running():
            await restart(worker)
    cluster.postgres.psql(TRUNCATE_APPLICATION_TABLES)
    master = cluster.master_host()
    assert master is not None
    cluster.redis[master].flushall()
    cluster.mail.clear()
    async with cluster_db.acquire() as conn:
        key = (await create_client(conn, "shop", is_admin=False)).api_key
        products = []
        for number, stock in enumerate(INITIAL_STOCK, 1):
            product = ProductCreate(
                sku=f"SKU-{number}",
                name=f"Product {number}",
                price_cents=1_000,
                currency="EUR",
                stock=stock,
            )
            created = await products_repo.insert(conn, product)
            assert created is not None
            products.append(created)
    async with httpx.AsyncClient(base_url=cluster.url, timeout=30) as client:
        yield Books(client, key, {product.id: product.stock for product in products})


async def reachable(address: str, port: int, timeout_s: float = 3.0) -> bool:
    try:
        async with asyncio.timeout(timeout_s):
            _, writer = await asyncio.open_connection(address, port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    await writer.wait_closed()
    return True


async def orders_served(api: ApiProcess) -> float:
    """How many orders this API host has accepted since it started, from its own /metrics."""
    async with httpx.AsyncClient(base_url=api.url, timeout=5) as client:
        text = (await client.get("/metrics")).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "orders_http_request_duration_seconds"
        for sample in family.samples
        if sample.name.endswith("_count")
        and sample.labels.get("method") == "POST"
        and sample.labels.get("route") == "/v1/orders"
        and sample.labels.get("status") == "201"
    )


async def restart(worker: WorkerProcess) -> None:
    starts = worker.output().count("worker_started")
    worker.start()
    await worker.wait_until_started(timeout_s=60, starts=starts + 1)


def jobs_done(worker: WorkerProcess) -> int:
    """Reservations and confirmations the worker logged, since it first started."""
    output = worker.output()
    return sum(
        output.count(f'"{event}"')
        for event in ("inventory_reserved", "inventory_not_reserved", "confirmation_sent")
    )


async def confirmed(db: asyncpg.Pool) -> int:
    count: int = await db.fetchval("SELECT count(*) FROM orders WHERE status = 'confirmed'")
    return count


async def test_a_worker_host_cut_off_for_ten_seconds_loses_and_doubles_nothing(
    cluster: Cluster, cluster_db: asyncpg.Pool, books: Books
) -> None:
    cut_off = cluster.workers["worker1"]
    cut_off_address = cluster.network.hosts["worker1"]
    served_before = [await orders_served(api) for api in cluster.apis]
    events_before = len(cut_off.log_events())
    started = time.monotonic()
    async with placing(books, 2, every_s=0.1):
        await asyncio.sleep(5)
        before = await confirmed(cluster_db)
        cluster.network.cut("worker1")
        try:
            await asyncio.sleep(PARTITION_S / 2)
            reachable_while_cut = await reachable(cut_off_address, WORKER_METRICS_PORT)
            await asyncio.sleep(PARTITION_S / 2)
            during = await confirmed(cluster_db) - before
        finally:
            cluster.network.reconnect("worker1")
        jobs_before_reconnected = jobs_done(cut_off)
        await asyncio.sleep(LOAD_S - (time.monotonic() - started))
    await settle(books, cluster_db, list(cluster.workers.values()))
    served = [await orders_served(api) - served_before[n] for n, api in enumerate(cluster.apis)]
    counts = await check_the_books(books, cluster_db, cluster.mail, Settings())

    assert not reachable_while_cut, "the partition did not cut the worker host off"
    assert during > 0, "the other worker host did not carry on"
    # Its Redis commands retry for longer than the partition (worker.settings), and a job claim
    # the partition broke off is left for the next poll (worker.arq_worker).
    assert cut_off.running(), f"worker1 exited with {cut_off.returncode} in the partition"
    assert jobs_done(cut_off) > jobs_before_reconnected, "the worker host did not rejoin"
    assert all(count > 0 for count in served), f"nginx sent no orders to an API host: {served}"
    complaints = Counter(
        event["event"]
        for event in cut_off.log_events()[events_before:]
        if event.get("level") in {"warning", "error"}
    )
    print(
        f"\npartition: {during} orders confirmed while worker1 was cut off; orders accepted by "
        f"each API host {served}; {counts}; what worker1 logged: {dict(complaints)}"
    )


async def test_a_worker_host_lost_with_every_process_on_it_loses_and_doubles_nothing(
    cluster: Cluster, cluster_db: asyncpg.Pool, books: Books
) -> None:
    lost = cluster.workers["worker2"]
    started = time.monotonic()
    async with placing(books, 2, every_s=0.1):
        await asyncio.sleep(5)
        # The SMTP server is away around the kill, so that no email is in the window between
        # its acceptance and the worker's record of it: a copy there is documented (the
        # reliability contract in docs/architecture.md), not what this test is about.
        cluster.mail.stop()
        await asyncio.sleep(1)
        pids = cluster.network.pids("worker2")
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        lost.wait(10)
        cluster.mail.start()
        await asyncio.sleep(5)
        before = await confirmed(cluster_db)
        # The host comes back, as a machine that was rebooted: the worker starts again.
        await restart(lost)
        jobs_before_back = jobs_done(lost)
        await asyncio.sleep(max(5.0, LOAD_S - (time.monotonic() - started)))
    await settle(books, cluster_db, list(cluster.workers.values()))
    counts = await check_the_books(books, cluster_db, cluster.mail, Settings())

    assert pids, "no process ran on the lost host"
    assert before > 0
    assert jobs_done(lost) > jobs_before_back, "the host came back but its worker ran nothing"
    print(f"\nlost host: {len(pids)} processes killed -9 on worker2; {counts}")


async def test_a_redis_failover_between_hosts_loses_and_doubles_nothing(
    cluster: Cluster, cluster_db: asyncpg.Pool, books: Books
) -> None:
    old = cluster.master_host()
    assert old is not None
    new = next(host for host in cluster.redis if host != old)
    subscribed = [api.output().count('"cache_listener_subscribed"') for api in cluster.apis]
    started = time.monotonic()
    try:
        async with placing(books, 2, every_s=0.1):
            await asyncio.sleep(5)
            cluster.redis[old].kill()
            killed_at = time.monotonic()

            async def promoted() -> bool:
                return await asyncio.to_thread(cluster.master_host) == new

            await wait_for(promoted, timeout_s=30)
            promoted_s = time.monotonic() - killed_at
            jobs_at_promotion = {host: jobs_done(w) for host, w in cluster.workers.items()}
            await asyncio.sleep(max(5.0, LOAD_S - (time.monotonic() - started)))

        # Both API hosts subscribe again, to the new primary.
        async def resubscribed() -> bool:
            return all(
                api.output().count('"cache_listener_subscribed"') >= subscribed[n] + 1
                for n, api in enumerate(cluster.apis)
            )

        await wait_for(resubscribed, timeout_s=30)
        await settle(books, cluster_db, list(cluster.workers.values()))
        counts = await check_the_books(books, cluster_db, cluster.mail, Settings())
    finally:
        # Back as the new primary's replica, as an operator would bring the host back.
        killed = cluster.redis[old]
        if not killed.running:
            killed.replica_of = (cluster.redis[new].host, REDIS_PORT)
            killed.start()

    for host, worker in cluster.workers.items():
        assert worker.running(), f"{host}'s worker did not ride out the failover"
        assert jobs_done(worker) > jobs_at_promotion[host], f"{host} did not follow the primary"
    print(f"\nRedis failover: {new} promoted {promoted_s:.1f} s after {old} was killed; {counts}")
