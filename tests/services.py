"""Real Postgres, Redis and SMTP for the tests: started once per session, cleaned before each test.

The first test that asks for `pg_service`, `redis_service` or `mail_sink` starts all three on
free ports (Postgres in a temporary directory with fsync off), points DATABASE_URL, REDIS_URL and
SMTP_URL at them, and migrates the database. Before every test that uses them, `clean_state`
restarts whatever a fault-injection test left stopped, empties the application tables and Redis,
and forgets received mail.

The fixtures are synchronous on purpose: they run outside any event loop, so they cannot clash
with pytest-asyncio's session loop.
"""

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devstack.mailsink import MailSink
from devstack.project import alembic_upgrade_head
from devstack.services import (
    LOOPBACK,
    PgBouncerService,
    PostgresService,
    RedisService,
    ensure_binaries,
    free_port,
)
from kit.settings import get_settings

# Asking for any of these fixtures, directly or through another fixture, makes a test one that
# uses the services, and so one that `clean_state` cleans up before.
SERVICE_FIXTURES = frozenset({"service_stack", "pg_service", "redis_service", "mail_sink"})

# Empties every application table in one round trip; the migration history stays.
TRUNCATE_APPLICATION_TABLES = """
SET lock_timeout = '10s';
DO $$
DECLARE tables text;
BEGIN
    SELECT string_agg(format('%I.%I', schemaname, tablename), ', ') INTO tables
    FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version';
    IF tables IS NOT NULL THEN
        EXECUTE 'TRUNCATE TABLE ' || tables || ' RESTART IDENTITY CASCADE';
    END IF;
END
$$;
"""


@dataclass(frozen=True)
class ServiceStack:
    postgres: PostgresService
    redis: RedisService
    mail: MailSink

    def reset(self) -> None:
        """Bring every service back up if a test stopped it, then empty it."""
        for service in (self.postgres, self.redis, self.mail):
            if not service.running:
                service.start()
        self.postgres.psql(TRUNCATE_APPLICATION_TABLES)
        self.redis.flushall()
        self.mail.clear()


@pytest.fixture(scope="session")
def service_stack() -> Iterator[ServiceStack]:
    ensure_binaries()
    root = Path(tempfile.mkdtemp(prefix="orders-tests-"))
    # mkdtemp makes the directory private to us; when we are root, Postgres runs as another
    # user, who must be able to enter it to reach its own data directory inside.
    root.chmod(0o711)
    stack = ServiceStack(
        postgres=PostgresService(root / "postgres", free_port(), fsync=False),
        redis=RedisService(root / "redis", free_port()),
        mail=MailSink(root / "mail", free_port()),
    )
    started: list[PostgresService | RedisService | MailSink] = []
    try:
        with pytest.MonkeyPatch.context() as env:
            for service in (stack.postgres, stack.redis, stack.mail):
                started.append(service)
                service.start()
            env.setenv("DATABASE_URL", stack.postgres.url)
            env.setenv("REDIS_URL", stack.redis.url)
            env.setenv("SMTP_URL", stack.mail.url)
            # Settings are read once per process; make the next read see the variables above.
            get_settings.cache_clear()
            alembic_upgrade_head(os.environ, capture=True)
            try:
                yield stack
            finally:
                get_settings.cache_clear()
    finally:
        for service in reversed(started):
            service.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_service(service_stack: ServiceStack) -> PostgresService:
    """The test Postgres: `url`, `stop()`, `start()`, `kill()`, `psql(sql)` as superuser."""
    return service_stack.postgres


@pytest.fixture(scope="session")
def redis_service(service_stack: ServiceStack) -> RedisService:
    """The test Redis: `url`, `stop()`, `start()`, `kill()`; a restart comes back empty."""
    return service_stack.redis


@pytest.fixture(scope="session")
def mail_sink(service_stack: ServiceStack) -> MailSink:
    """The test SMTP server: `url`, `messages`, `wait_for(n)`, `clear()`, `reject_next(n)`."""
    return service_stack.mail


@pytest.fixture(scope="session")
def pgbouncer(service_stack: ServiceStack) -> Iterator[PgBouncerService]:
    """A pgbouncer in transaction pooling in front of the test Postgres (`url`), with fewer
    server connections than a pool of clients asks for, so that transactions change server
    connections; the session settings the application cannot send through it come from its
    connect_query, as in production from the role (docs/deployment.md)."""
    ensure_binaries(pgbouncer=True)
    timeout_ms = get_settings().db_statement_timeout_ms
    root = Path(tempfile.mkdtemp(prefix="orders-tests-pgbouncer-"))
    root.chmod(0o711)
    bouncer = PgBouncerService(
        root / "pgbouncer",
        free_port(),
        upstream=(LOOPBACK, service_stack.postgres.port),
        default_pool_size=4,
        connect_query=(
            f"SET statement_timeout = {timeout_ms}; "
            f"SET idle_in_transaction_session_timeout = {timeout_ms * 2}"
        ),
    )
    bouncer.start()
    try:
        yield bouncer
    finally:
        bouncer.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(autouse=True)
def clean_state(request: pytest.FixtureRequest) -> None:
    """Before each test that uses the services: every service up, and empty."""
    if SERVICE_FIXTURES.isdisjoint(request.fixturenames):
        return
    stack: ServiceStack = request.getfixturevalue("service_stack")
    stack.reset()
