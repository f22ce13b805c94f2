"""Postgres and Redis as child processes, and the session fixtures of tests/services.py."""

import shutil
import smtplib
import tempfile
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import asyncpg
import pytest
import redis

from devstack.mailsink import MailSink
from devstack.services import (
    LOOPBACK,
    PgBouncerService,
    PostgresService,
    RedisService,
    SentinelService,
    ensure_binaries,
    free_port,
    port_is_free,
)
from kit.settings import get_settings
from tests.services import ServiceStack

pytestmark = pytest.mark.slow


@pytest.fixture
def data_root() -> Iterator[Path]:
    # Not tmp_path: pytest keeps it under a directory private to us, and as root Postgres runs
    # as another user, who could not enter it.
    root = Path(tempfile.mkdtemp(prefix="devstack-test-"))
    root.chmod(0o711)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres(data_root: Path) -> Iterator[PostgresService]:
    service = PostgresService(data_root / "postgres", free_port(), fsync=False)
    service.start()
    yield service
    service.stop()


@pytest.fixture
def redis_server(data_root: Path) -> Iterator[RedisService]:
    service = RedisService(data_root / "redis", free_port())
    service.start()
    yield service
    service.stop()


async def answers(url: str) -> list[int]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch("SELECT answer FROM kept ORDER BY answer")
    finally:
        await connection.close()
    return [row["answer"] for row in rows]


def test_free_port_is_free() -> None:
    assert port_is_free(free_port())


async def test_postgres_serves_the_application_role_and_keeps_data_across_a_restart(
    postgres: PostgresService,
) -> None:
    connection = await asyncpg.connect(postgres.url)
    try:
        assert await connection.fetchval("SELECT current_user || '@' || current_database()") == (
            "orders@orders"
        )
        await connection.execute("CREATE TABLE kept (answer int)")
        await connection.execute("INSERT INTO kept VALUES (42)")
    finally:
        await connection.close()
    port = postgres.port

    postgres.stop()

    assert not postgres.running
    assert port_is_free(port)
    with pytest.raises(OSError):
        await asyncpg.connect(postgres.url, timeout=2)

    postgres.start()

    assert postgres.port == port
    assert await answers(postgres.url) == [42]


async def test_postgres_killed_mid_session_comes_back_with_every_commit(
    postgres: PostgresService,
) -> None:
    connection = await asyncpg.connect(postgres.url)
    await connection.execute("CREATE TABLE kept (answer int)")
    await connection.execute("INSERT INTO kept SELECT generate_series(1, 5)")

    postgres.kill()

    # What a client sees on a dead connection varies with timing; only the server matters here.
    connection.terminate()
    assert not postgres.running
    assert port_is_free(postgres.port)

    postgres.start()

    assert await answers(postgres.url) == [1, 2, 3, 4, 5]


def test_postgres_psql_runs_sql_as_superuser(postgres: PostgresService) -> None:
    assert postgres.psql("SELECT current_user, 6 * 7").strip() == "postgres|42"


def test_redis_answers_stops_and_restarts_empty_on_the_same_port(
    redis_server: RedisService,
) -> None:
    client = redis.Redis.from_url(redis_server.url, socket_timeout=2)
    client.set("greeting", "hello")
    assert client.get("greeting") == b"hello"
    port = redis_server.port

    redis_server.stop()

    assert not redis_server.running
    assert port_is_free(port)
    with pytest.raises(redis.ConnectionError):
        client.ping()

    redis_server.start()

    assert redis_server.port == port
    assert client.ping()
    # Nothing is persisted: a restarted Redis has lost its queue, as after a crash.
    assert client.get("greeting") is None
    client.close()


def test_redis_killed_comes_back_on_the_same_port(redis_server: RedisService) -> None:
    redis_server.kill()

    assert not redis_server.running
    assert port_is_free(redis_server.port)

    redis_server.start()

    with redis_server.client() as client:
        assert client.ping()


def test_a_replica_copies_what_its_primary_is_given(
    redis_server: RedisService, data_root: Path
) -> None:
    replica = RedisService(
        data_root / "replica", free_port(), replica_of=(redis_server.host, redis_server.port)
    )
    replica.start()
    try:
        with redis_server.client() as primary:
            primary.set("greeting", "hello")
        with replica.client() as client:
            # The first synchronisation takes a moment; the write arrives with it or after.
            deadline = time.monotonic() + 15
            while client.get("greeting") != b"hello":
                assert time.monotonic() < deadline, "the replica never got the write"
                time.sleep(0.05)
            assert client.info("replication")["role"] == "slave"
    finally:
        replica.stop()


def test_a_sentinel_names_the_master_it_watches(
    redis_server: RedisService, data_root: Path
) -> None:
    ensure_binaries(sentinel=True)
    sentinel = SentinelService(
        data_root / "sentinel", free_port(), master=(redis_server.host, redis_server.port)
    )
    sentinel.start()
    try:
        assert sentinel.master_address() == (redis_server.host, redis_server.port)
        assert sentinel.address == f"{LOOPBACK}:{sentinel.port}"
    finally:
        sentinel.stop()
    assert port_is_free(sentinel.port)


async def test_pgbouncer_is_killed_and_comes_back_on_the_same_port(
    pgbouncer: PgBouncerService,
) -> None:
    pgbouncer.kill()
    assert not pgbouncer.running

    pgbouncer.start()

    connection = await asyncpg.connect(pgbouncer.url, statement_cache_size=0)
    try:
        assert await connection.fetchval("SELECT 6 * 7") == 42
    finally:
        await connection.close()


def test_the_settings_point_at_the_session_services(
    pg_service: PostgresService, redis_service: RedisService, mail_sink: MailSink
) -> None:
    settings = get_settings()

    assert settings.database_url.get_secret_value() == pg_service.url
    assert settings.redis_url.get_secret_value() == redis_service.url
    assert settings.smtp_url == mail_sink.url


def test_the_session_database_is_migrated(pg_service: PostgresService) -> None:
    assert pg_service.psql("SELECT count(*) FROM alembic_version").strip() == "1"


def test_resetting_the_session_services_restarts_and_empties_them(
    service_stack: ServiceStack,
) -> None:
    postgres, redis_service, mail = service_stack.postgres, service_stack.redis, service_stack.mail
    postgres.psql("CREATE TABLE scratch (id serial PRIMARY KEY, note text)")
    try:
        postgres.psql("INSERT INTO scratch (note) VALUES ('left behind')")
        redis_service.flushall()
        with redis_service.client() as client:
            client.set("left", "behind")
        message = EmailMessage()
        message["Subject"] = "left behind"
        with smtplib.SMTP(mail.host, mail.port, timeout=5) as smtp:
            smtp.send_message(message, "a@example.com", ["b@example.com"])
        redis_service.stop()
        mail.stop()

        service_stack.reset()

        assert redis_service.running
        assert mail.running
        assert postgres.psql("SELECT count(*) FROM scratch").strip() == "0"
        # RESTART IDENTITY: ids start over, so tests can rely on them.
        assert postgres.psql("INSERT INTO scratch (note) VALUES ('x') RETURNING id").strip() == (
            "1"
        )
        with redis_service.client() as client:
            assert client.dbsize() == 0
        assert mail.messages == []
        assert postgres.psql("SELECT count(*) FROM alembic_version").strip() == "1"
    finally:
        postgres.psql("DROP TABLE scratch")
