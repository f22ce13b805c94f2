"""The console's audit log in Postgres (the `console_audit` table of shop/models.py)."""

from dataclasses import dataclass
from datetime import datetime

import asyncpg


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    client_id: int | None
    client_name: str
    role: str | None
    action: str
    target: str
    outcome: str
    detail: str | None


async def insert(
    conn: asyncpg.Connection,
    *,
    client_id: int | None,
    client_name: str,
    role: str | None,
    action: str,
    target: str,
    outcome: str,
    detail: str | None,
) -> AuditEntry:
    row = await conn.fetchrow(
        "INSERT INTO console_audit (client_id, client_name, role, action, target, outcome, detail)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)"
        " RETURNING id, at, client_id, client_name, role, action, target, outcome, detail",
        client_id,
        client_name,
        role,
        action,
        target,
        outcome,
        detail,
    )
    assert row is not None
    return AuditEntry(**row)


async def list_recent(
    conn: asyncpg.Connection, *, before_id: int | None = None, limit: int = 50
) -> list[AuditEntry]:
    """Newest first; `before_id` pages back from an entry."""
    rows = await conn.fetch(
        "SELECT id, at, client_id, client_name, role, action, target, outcome, detail"
        " FROM console_audit WHERE $1::bigint IS NULL OR id < $1 ORDER BY id DESC LIMIT $2",
        before_id,
        limit,
    )
    return [AuditEntry(**row) for row in rows]
