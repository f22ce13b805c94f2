"""The product's asyncpg pool: what releasing a connection costs, what it still cleans up, and
in what order waiting requests get a connection."""

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from pydantic import SecretStr

from devstack.services import PgBouncerService
from kit.db import create_pool
from kit.settings import Settings


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    """The product's pool, with one connection, so that every acquire gets the same one."""
    product_pool = await create_pool(
        settings.model_copy(update={"db_pool_min_size": 1, "db_pool_max_size": 1}), "test"
    )
    yield product_pool
    await product_pool.close()


async def test_releasing_a_connection_sends_no_query(pool: asyncpg.Pool) -> None:
    sent: list[str] = []
    async with pool.acquire() as conn:
        conn.add_query_logger(lambda record: sent.append(record.query))
        await conn.fetchval("SELECT 1")
    assert sent == ["SELECT 1"]


async def test_a_transaction_left_open_is_still_rolled_back_on_release(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as conn:
        await conn.execute("CREATE TEMPORARY TABLE written (n int)")
        await conn.execute("BEGIN")
        await conn.execute("INSERT INTO written VALUES (1)")
    async with pool.acquire() as conn:
        assert not conn.is_in_transaction()
        assert await conn.fetchval("SELECT count(*) FROM written") == 0


async def test_connections_go_to_waiting_requests_in_the_order_they_asked(
    settings: Settings,
) -> None:
    """A request waiting for a connection is never passed over by one that asked later.

    Sixteen clients take turns on two connections. In a first-come, first-served queue a client
    that asks waits for at most the fifteen others; asyncpg's own queue lets latecomers take a
    connection from under a waiter, which then waited through twice as many turns or more.
    """
    pool = await create_pool(
        settings.model_copy(update={"db_pool_min_size": 2, "db_pool_max_size": 2}), "test"
    )
    clients = 16
    granted = 0
    most_turns_waited = 0

    async def client() -> None:
        nonlocal granted, most_turns_waited
        for _ in range(20):
            granted_when_asked = granted
            async with pool.acquire() as conn:
                granted += 1
                most_turns_waited = max(most_turns_waited, granted - granted_when_asked)
                await conn.fetchval("SELECT 1")
            await asyncio.sleep(0)

    try:
        await asyncio.gather(*(client() for _ in range(clients)))
    finally:
        await pool.close()
    assert granted == clients * 20
    assert most_turns_waited <= clients


async def test_a_transaction_mode_pool_through_pgbouncer_prepares_nothing_and_keeps_the_timeouts(
    settings: Settings, pgbouncer: PgBouncerService
) -> None:
    # Ten client connections over pgbouncer's four server connections: statements of one client
    # land on servers another client prepared on, which named statements would not survive.
    pooled = await create_pool(
        settings.model_copy(
            update={
                "database_url": SecretStr(pgbouncer.url),
                "database_pool_mode": "transaction",
                "db_pool_max_size": 10,
            }
        ),
        "test-bouncer",
    )

    async def work(n: int) -> tuple[int, str, int]:
        async with pooled.acquire() as conn:
            outside = await conn.fetchval("SELECT $1::int * 2 FROM pg_sleep(0.005)", n)
            async with conn.transaction():
                await conn.fetchval("SELECT $1::text", str(n))
                timeout = await conn.fetchval(
                    "SELECT setting FROM pg_settings WHERE name = 'statement_timeout'"
                )
                prepared = await conn.fetchval("SELECT count(*) FROM pg_prepared_statements")
        return outside, timeout, prepared

    try:
        results = await asyncio.gather(*(work(n) for n in range(200)))
    finally:
        await pooled.close()

    assert [outside for outside, _, _ in results] == [n * 2 for n in range(200)]
    assert {timeout for _, timeout, _ in results} == {str(settings.db_statement_timeout_ms)}
    assert {prepared for _, _, prepared in results} == {0}


async def test_pgbouncer_refuses_the_session_settings_of_a_session_mode_pool(
    settings: Settings, pgbouncer: PgBouncerService
) -> None:
    session_settings = settings.model_copy(
        update={"database_url": SecretStr(pgbouncer.url), "db_pool_min_size": 1}
    )
    with pytest.raises(asyncpg.ProtocolViolationError, match="statement_timeout"):
        await create_pool(session_settings, "test-session-through-bouncer")
