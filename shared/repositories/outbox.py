from dataclasses import dataclass

import asyncpg

from shared.jobs import JobName, job_id_for


@dataclass(frozen=True, slots=True)
class PendingJob:
    id: int
    job_id: str
    function: str
    args: list[object]
    request_id: str | None


async def add_order_job(
    conn: asyncpg.Connection, function: JobName, order_id: int, request_id: str | None
) -> None:
    """Records that `function(order_id)` must run once this transaction commits."""
    await conn.execute(
        "INSERT INTO outbox (job_id, function, args, order_id, request_id)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (job_id) DO NOTHING",
        job_id_for(function, order_id),
        function.value,
        [order_id],
        order_id,
        request_id,
    )
    await conn.execute("SELECT pg_notify('outbox', '')")


async def claim_pending(conn: asyncpg.Connection, limit: int) -> list[PendingJob]:
    """The oldest undelivered jobs, locked so that concurrent relays take disjoint batches."""
    rows = await conn.fetch(
        "SELECT id, job_id, function, args, request_id FROM outbox"
        " WHERE delivered_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
        limit,
    )
    return [PendingJob(**row) for row in rows]


async def mark_delivered(conn: asyncpg.Connection, ids: list[int]) -> None:
    await conn.execute(
        "UPDATE outbox SET delivered_at = now(), delivery_attempts = delivery_attempts + 1"
        " WHERE id = any($1::bigint[])",
        ids,
    )


async def record_failed_delivery(conn: asyncpg.Connection, ids: list[int], error: str) -> None:
    await conn.execute(
        "UPDATE outbox SET delivery_attempts = delivery_attempts + 1, last_error = $2"
        " WHERE id = any($1::bigint[])",
        ids,
        error,
    )


async def count_pending(conn: asyncpg.Connection) -> int:
    count = await conn.fetchval("SELECT count(*) FROM outbox WHERE delivered_at IS NULL")
    return int(count)
