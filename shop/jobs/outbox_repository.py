import json
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from shop.jobs.names import JobName


@dataclass(frozen=True, slots=True)
class PendingJob:
    id: int
    job_id: str
    function: str
    args: list[object]
    request_id: str | None


_CLAIM_PENDING = (
    "UPDATE outbox SET delivered_at = now(), delivery_attempts = delivery_attempts + 1"
    " WHERE id IN (SELECT id FROM outbox WHERE delivered_at IS NULL"
    "              ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)"
    " RETURNING id, job_id, function, args, request_id"
)


async def claim_pending(conn: asyncpg.Connection, limit: int) -> list[PendingJob]:
    """The oldest undelivered jobs, marked delivered, in id order.

    Concurrent relays take disjoint batches (SKIP LOCKED). Call inside a transaction that ends
    once the jobs are queued: if queueing fails, rolling back leaves them undelivered.
    """
    rows = await conn.fetch(_CLAIM_PENDING, limit)
    return sorted((PendingJob(**row) for row in rows), key=lambda job: job.id)


async def claim_unfinished(
    conn: asyncpg.Connection, delivered_before_s: float, limit: int
) -> list[PendingJob]:
    """Jobs handed over at least `delivered_before_s` ago whose work is still not done.

    An inventory job is done once its order is no longer pending, a confirmation job once the
    email is recorded or the order is no longer confirmed. Dead jobs (not yet retried) are
    left to operators. The first condition is the predicate of `ix_orders_unfinished`.
    """
    rows = await conn.fetch(
        "SELECT o.id, o.job_id, o.function, o.args, o.request_id"
        " FROM orders ord JOIN outbox o ON o.order_id = ord.id"
        " WHERE (ord.status = 'pending'"
        "        OR (ord.status = 'confirmed' AND ord.confirmation_sent_at IS NULL))"
        " AND ((o.function = $1 AND ord.status = 'pending')"
        "      OR (o.function = $2 AND ord.status = 'confirmed'))"
        " AND o.delivered_at < now() - make_interval(secs => $3)"
        " AND NOT EXISTS (SELECT 1 FROM dead_jobs d"
        "                 WHERE d.job_id = o.job_id AND d.redriven_at IS NULL)"
        " ORDER BY o.id LIMIT $4 FOR UPDATE OF o SKIP LOCKED",
        JobName.RESERVE_INVENTORY.value,
        JobName.SEND_CONFIRMATION.value,
        delivered_before_s,
        limit,
    )
    return [PendingJob(**row) for row in rows]


_DELETE_DELIVERED = (
    "DELETE FROM outbox WHERE id = any(ARRAY("
    " SELECT o.id FROM outbox o"
    " WHERE o.delivered_at < now() - make_interval(secs => $1)"
    " AND NOT EXISTS (SELECT 1 FROM orders ord WHERE ord.id = o.order_id"
    "                 AND (ord.status = 'pending'"
    "                      OR (ord.status = 'confirmed' AND ord.confirmation_sent_at IS NULL)))"
    " ORDER BY o.delivered_at LIMIT $2 FOR UPDATE OF o SKIP LOCKED))"
)


async def delete_delivered(conn: asyncpg.Connection, older_than_s: float, limit: int) -> int:
    """Deletes up to `limit` rows delivered more than `older_than_s` ago, oldest delivery first;
    returns how many.

    A row whose order's work is not done stays whatever its age: the relay hands it over again
    from there (`claim_unfinished`), and a dead job nobody retried keeps its order pending.
    Rows a relay holds are skipped, not waited for. The range scan is on
    `ix_outbox_delivered_at`, the order check on the orders' primary key, and the ids, collected
    first (`= any(ARRAY(...))`, not `IN`, which the planner may hash-join against a scan of the
    whole table), are deleted through the primary key.
    """
    status: str = await conn.execute(_DELETE_DELIVERED, older_than_s, limit)
    return int(status.split()[-1])


async def explain_delete_delivered(
    conn: asyncpg.Connection, older_than_s: float, limit: int
) -> str:
    """The plan Postgres chooses for `delete_delivered` (not run), for tests and the soak."""
    rows = await conn.fetch("EXPLAIN " + _DELETE_DELIVERED, older_than_s, limit)
    return "\n".join(row[0] for row in rows)


async def explain_analyze_claim(conn: asyncpg.Connection, limit: int) -> float:
    """The relay's claim run under EXPLAIN ANALYZE and rolled back: its execution time in ms.
    For the soak, which watches it stay flat while rows come and go."""
    transaction = conn.transaction()
    await transaction.start()
    try:
        plan = await conn.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + _CLAIM_PENDING, limit)
    finally:
        # The rows it marked are the relay's to hand over, not the probe's.
        await transaction.rollback()
    return float(json.loads(plan)[0]["Execution Time"])


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


@dataclass(frozen=True, slots=True)
class OutboxStats:
    pending: int
    # Pending rows whose delivery failed at least once (Redis was down, say).
    failing: int
    oldest_pending_age_s: float | None
    delivered_last_5m: int
    delivered_last_1h: int
    last_error: str | None


async def stats(conn: asyncpg.Connection) -> OutboxStats:
    row = await conn.fetchrow(
        "SELECT count(*) FILTER (WHERE delivered_at IS NULL) AS pending,"
        " count(*) FILTER (WHERE delivered_at IS NULL AND delivery_attempts > 0) AS failing,"
        " extract(epoch FROM now() - min(created_at) FILTER (WHERE delivered_at IS NULL))"
        "   AS oldest_pending_age_s,"
        " count(*) FILTER (WHERE delivered_at > now() - interval '5 minutes') AS delivered_last_5m,"
        " count(*) FILTER (WHERE delivered_at > now() - interval '1 hour') AS delivered_last_1h,"
        " (SELECT last_error FROM outbox WHERE delivered_at IS NULL AND last_error IS NOT NULL"
        "  ORDER BY id DESC LIMIT 1) AS last_error"
        " FROM outbox"
    )
    assert row is not None
    age = row["oldest_pending_age_s"]
    return OutboxStats(
        pending=row["pending"],
        failing=row["failing"],
        oldest_pending_age_s=None if age is None else round(float(age), 3),
        delivered_last_5m=row["delivered_last_5m"],
        delivered_last_1h=row["delivered_last_1h"],
        last_error=row["last_error"],
    )


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    id: int
    job_id: str
    function: str
    request_id: str | None
    created_at: datetime
    delivered_at: datetime | None
    delivery_attempts: int
    last_error: str | None


async def list_for_order(conn: asyncpg.Connection, order_id: int) -> list[OutboxEntry]:
    rows = await conn.fetch(
        "SELECT id, job_id, function, request_id, created_at, delivered_at, delivery_attempts,"
        " last_error FROM outbox WHERE order_id = $1 ORDER BY id",
        order_id,
    )
    return [OutboxEntry(**row) for row in rows]
