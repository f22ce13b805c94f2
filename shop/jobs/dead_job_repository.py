"""SQL of the dead jobs (`dead_jobs`), one row each time a job id dies.

A row's `redriven_at` and `redriven_job_id` say when it was retried and as which job: the names
of the columns, kept as they are.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

_COLUMNS = (
    "id, job_id, function, args, kwargs, order_id, error, traceback, tries, enqueued_at,"
    " failed_at, redriven_at, redriven_job_id"
)


@dataclass(frozen=True, slots=True)
class DeadJob:
    id: int
    job_id: str
    function: str
    args: list[Any]
    kwargs: dict[str, Any]
    order_id: int | None
    error: str
    traceback: str | None
    tries: int
    enqueued_at: datetime | None
    failed_at: datetime
    redriven_at: datetime | None
    redriven_job_id: str | None


async def insert(
    conn: asyncpg.Connection,
    *,
    job_id: str,
    function: str,
    args: list[Any],
    kwargs: dict[str, Any],
    order_id: int | None,
    error: str,
    traceback: str | None,
    tries: int,
    enqueued_at: datetime | None,
) -> int | None:
    """The new row's id; None if the job is recorded as dead already and not retried.

    A job can be recorded twice when its worker dies between this insert and telling ARQ; the
    table keeps one row per death of a job id, not one per attempt to record it.
    """
    dead_id: int | None = await conn.fetchval(
        "INSERT INTO dead_jobs (job_id, function, args, kwargs, order_id, error, traceback,"
        " tries, enqueued_at)"
        " SELECT $1::varchar, $2::varchar, $3::jsonb, $4::jsonb, $5::bigint, $6::text, $7::text,"
        " $8::integer, $9::timestamptz"
        " WHERE NOT EXISTS (SELECT 1 FROM dead_jobs WHERE job_id = $1 AND redriven_at IS NULL)"
        " RETURNING id",
        job_id,
        function,
        args,
        kwargs,
        order_id,
        error,
        traceback,
        tries,
        enqueued_at,
    )
    return dead_id


async def get(conn: asyncpg.Connection, dead_id: int, *, lock: bool = False) -> DeadJob | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM dead_jobs WHERE id = $1" + (" FOR UPDATE" if lock else ""),
        dead_id,
    )
    return None if row is None else DeadJob(**row)


async def list_recent(
    conn: asyncpg.Connection,
    *,
    function: str | None = None,
    only_pending: bool = False,
    search: str | None = None,
    limit: int = 100,
) -> list[DeadJob]:
    """Newest first; `only_pending` leaves out the ones already retried; `search` is a
    case-insensitive substring of the job id, arguments or error."""
    conditions = ["true"]
    args: list[object] = []
    if function is not None:
        args.append(function)
        conditions.append(f"function = ${len(args)}")
    if search is not None:
        args.append(search.lower())
        conditions.append(
            f"strpos(lower(job_id || ' ' || args::text || ' ' || kwargs::text || ' ' || error),"
            f" ${len(args)}) > 0"
        )
    if only_pending:
        conditions.append("redriven_at IS NULL")
    args.append(limit)
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM dead_jobs WHERE {' AND '.join(conditions)}"
        f" ORDER BY id DESC LIMIT ${len(args)}",
        *args,
    )
    return [DeadJob(**row) for row in rows]


async def mark_retried(conn: asyncpg.Connection, dead_id: int, new_job_id: str) -> None:
    await conn.execute(
        "UPDATE dead_jobs SET redriven_at = now(), redriven_job_id = $2 WHERE id = $1",
        dead_id,
        new_job_id,
    )


async def list_for_job(conn: asyncpg.Connection, job_id: str) -> list[DeadJob]:
    """Every death of one job id, newest first."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM dead_jobs WHERE job_id = $1 ORDER BY id DESC", job_id
    )
    return [DeadJob(**row) for row in rows]


async def list_for_order(conn: asyncpg.Connection, order_id: int) -> list[DeadJob]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM dead_jobs WHERE order_id = $1 ORDER BY id", order_id
    )
    return [DeadJob(**row) for row in rows]


async def delete_retried(conn: asyncpg.Connection, older_than_s: float, limit: int) -> int:
    """Deletes up to `limit` dead jobs retried more than `older_than_s` ago; returns how many.

    Dead jobs nobody retried are never deleted: each is work an operator has still to decide on.
    The ledger holds failures only, small beside the outbox, so a scan of it needs no index.
    """
    status: str = await conn.execute(
        "DELETE FROM dead_jobs WHERE id = any(ARRAY("
        " SELECT id FROM dead_jobs"
        " WHERE redriven_at < now() - make_interval(secs => $1)"
        " ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED))",
        older_than_s,
        limit,
    )
    return int(status.split()[-1])


async def count_unretried_older_than(conn: asyncpg.Connection, older_than_s: float) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM dead_jobs"
        " WHERE redriven_at IS NULL AND failed_at < now() - make_interval(secs => $1)",
        older_than_s,
    )
    return count
