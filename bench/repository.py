"""The benchmark's own statements: what no part of the product does, so no repository of it has.

Seeding goes through the product's repositories and services (bench.seed); what is here puts
the database in a known state between phases, or reads figures out of it afterwards.
"""

from dataclasses import dataclass

import asyncpg

from shop.jobs import outbox_repository as outbox_repo

_CLAIM_BATCH = 10_000


async def mark_outbox_delivered(conn: asyncpg.Connection) -> int:
    """Marks every undelivered outbox row delivered, as a relay would; returns how many."""
    total = 0
    while batch := await outbox_repo.claim_pending(conn, _CLAIM_BATCH):
        total += len(batch)
    return total


async def close_pending_orders(conn: asyncpg.Connection) -> None:
    """Cancels every pending order and marks every outbox row delivered.

    The relay re-delivers the jobs of orders still pending (shop/jobs/relay.py): orders placed
    by one phase and left pending would be worked through in the middle of the next one.
    """
    async with conn.transaction():
        await mark_outbox_delivered(conn)
        await conn.execute(
            "UPDATE orders SET status = 'cancelled', cancelled_at = now() WHERE status = 'pending'"
        )


# Scratch tables of bench.pgbench's reference writes: an order, its lines and its outbox row
# without foreign keys and with a primary key as their only index; one row per confirmation of
# the one-transaction-per-order baseline.
_SCRATCH_TABLES = """
CREATE TABLE bench_lean_orders (
    id bigserial PRIMARY KEY, client_id bigint NOT NULL, customer_email text NOT NULL,
    customer_name text NOT NULL, total_cents bigint NOT NULL, currency text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE bench_lean_lines (
    order_id bigint NOT NULL, position int NOT NULL, product_id bigint NOT NULL,
    quantity int NOT NULL, unit_price_cents bigint NOT NULL, PRIMARY KEY (order_id, position)
);
CREATE TABLE bench_lean_outbox (
    id bigserial PRIMARY KEY, job_id text NOT NULL, args jsonb NOT NULL, order_id bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE bench_row_confirmations (
    id bigserial PRIMARY KEY, product_id bigint NOT NULL,
    confirmed_at timestamptz NOT NULL DEFAULT now()
);
"""
_SCRATCH_NAMES = (
    "bench_lean_orders",
    "bench_lean_lines",
    "bench_lean_outbox",
    "bench_row_confirmations",
)


async def create_scratch_tables(conn: asyncpg.Connection) -> None:
    await drop_scratch_tables(conn)
    await conn.execute(_SCRATCH_TABLES)


async def drop_scratch_tables(conn: asyncpg.Connection) -> None:
    await conn.execute(f"DROP TABLE IF EXISTS {', '.join(_SCRATCH_NAMES)}")


async def last_order_id(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM orders"))


async def unfinished_orders(conn: asyncpg.Connection, client_id: int, after_id: int) -> int:
    """The client's orders after `after_id` still on their way: pending, or confirmed and not
    yet emailed."""
    count = await conn.fetchval(
        "SELECT count(*) FROM orders WHERE client_id = $1 AND id > $2"
        " AND (status = 'pending' OR (status = 'confirmed' AND confirmation_sent_at IS NULL))",
        client_id,
        after_id,
    )
    return int(count)


@dataclass(frozen=True, slots=True)
class OrderTimes:
    """When an order was accepted, confirmed and emailed, in seconds since the epoch."""

    id: int
    status: str
    created: float
    confirmed: float | None
    emailed: float | None


async def order_times(conn: asyncpg.Connection, client_id: int, after_id: int) -> list[OrderTimes]:
    rows = await conn.fetch(
        "SELECT id, status, extract(epoch FROM created_at)::float8 AS created,"
        " extract(epoch FROM confirmed_at)::float8 AS confirmed,"
        " extract(epoch FROM confirmation_sent_at)::float8 AS emailed"
        " FROM orders WHERE client_id = $1 AND id > $2 ORDER BY id",
        client_id,
        after_id,
    )
    return [OrderTimes(**row) for row in rows]


@dataclass(frozen=True, slots=True)
class DeliveryFigures:
    """Webhook deliveries after a given attempt: how many were delivered, how many tries were
    made, and the first and last try's times (seconds since the epoch)."""

    delivered: int
    tries: int
    first: float | None
    last: float | None


async def last_webhook_attempt_id(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM webhook_attempts"))


async def pending_webhook_deliveries(conn: asyncpg.Connection) -> int:
    return int(
        await conn.fetchval("SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'")
    )


async def webhook_delivery_figures(
    conn: asyncpg.Connection, after_attempt_id: int
) -> DeliveryFigures:
    row = await conn.fetchrow(
        "SELECT count(*) FILTER (WHERE status_code BETWEEN 200 AND 299) AS delivered,"
        " count(*) AS tries,"
        " extract(epoch FROM min(attempted_at))::float8 AS first,"
        " extract(epoch FROM max(attempted_at))::float8 AS last"
        " FROM webhook_attempts WHERE id > $1",
        after_attempt_id,
    )
    assert row is not None
    return DeliveryFigures(**row)


async def delete_webhook_endpoints(conn: asyncpg.Connection, client_id: int) -> None:
    await conn.execute("DELETE FROM webhook_endpoints WHERE client_id = $1", client_id)


@dataclass(frozen=True, slots=True)
class DatabaseCounters:
    """Postgres's running totals: WAL bytes written and transactions committed, all databases."""

    wal_bytes: int
    commits: int


async def database_counters(conn: asyncpg.Connection) -> DatabaseCounters:
    row = await conn.fetchrow(
        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint AS wal_bytes,"
        " (SELECT sum(xact_commit)::bigint FROM pg_stat_database) AS commits"
    )
    assert row is not None
    return DatabaseCounters(**row)


@dataclass(frozen=True, slots=True)
class OutboxSize:
    rows: int
    pending: int
    # The table with its indexes, and the rows vacuum has still to reclaim.
    total_bytes: int
    dead_rows: int


async def outbox_size(conn: asyncpg.Connection) -> OutboxSize:
    row = await conn.fetchrow(
        "SELECT (SELECT count(*) FROM outbox) AS rows,"
        " (SELECT count(*) FROM outbox WHERE delivered_at IS NULL) AS pending,"
        " pg_total_relation_size('outbox') AS total_bytes,"
        " (SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'outbox') AS dead_rows"
    )
    assert row is not None
    return OutboxSize(**row)
