from dataclasses import dataclass
from datetime import datetime

import asyncpg


@dataclass(frozen=True, slots=True)
class ClientRow:
    id: int
    name: str
    key_hash: bytes
    key_prefix: str
    is_admin: bool
    created_at: datetime
    revoked_at: datetime | None
    # ConsoleRole's value for admin keys that may use the operator console; None otherwise.
    console_role: str | None


_COLUMNS = "id, name, key_hash, key_prefix, is_admin, created_at, revoked_at, console_role"


async def insert(
    conn: asyncpg.Connection,
    *,
    name: str,
    key_hash: bytes,
    key_prefix: str,
    is_admin: bool,
    console_role: str | None = None,
) -> ClientRow:
    row = await conn.fetchrow(
        "INSERT INTO clients (name, key_hash, key_prefix, is_admin, console_role)"
        f" VALUES ($1, $2, $3, $4, $5) RETURNING {_COLUMNS}",
        name,
        key_hash,
        key_prefix,
        is_admin,
        console_role,
    )
    assert row is not None
    return ClientRow(**row)


async def find_active_by_key_hash(conn: asyncpg.Connection, key_hash: bytes) -> ClientRow | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM clients WHERE key_hash = $1 AND revoked_at IS NULL", key_hash
    )
    return None if row is None else ClientRow(**row)


async def list_all(conn: asyncpg.Connection) -> list[ClientRow]:
    rows = await conn.fetch(f"SELECT {_COLUMNS} FROM clients ORDER BY id")
    return [ClientRow(**row) for row in rows]


async def revoke(conn: asyncpg.Connection, client_id: int) -> bool:
    status = await conn.execute(
        "UPDATE clients SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", client_id
    )
    return bool(status == "UPDATE 1")


async def revoke_by_name(conn: asyncpg.Connection, name: str) -> int:
    status: str = await conn.execute(
        "UPDATE clients SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL", name
    )
    return int(status.split()[-1])


async def set_console_role(conn: asyncpg.Connection, client_id: int, role: str | None) -> bool:
    """Sets an active admin client's console role; False if there is no such admin client."""
    status = await conn.execute(
        "UPDATE clients SET console_role = $2 WHERE id = $1 AND is_admin AND revoked_at IS NULL",
        client_id,
        role,
    )
    return bool(status == "UPDATE 1")


async def find_active(conn: asyncpg.Connection, client_id: int) -> ClientRow | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM clients WHERE id = $1 AND revoked_at IS NULL", client_id
    )
    return None if row is None else ClientRow(**row)
