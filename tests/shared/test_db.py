"""The product's asyncpg pool: what releasing a connection costs and what it still cleans up."""

from collections.abc import AsyncIterator

import asyncpg
import pytest

from shared.db import create_pool
from shared.settings import Settings


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
