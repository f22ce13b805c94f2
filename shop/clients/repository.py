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


_COLUMNS = "id, name, key_hash, key_prefix, is_admin, created_at, revoked_at"


async def insert(
    conn: asyncpg.Connection, *, name: str, key_hash: bytes, key_prefix: str, is_admin: bool
) -> ClientRow:
    row = await conn.fetchrow(
        f"INSERT INTO clients (name, key_hash, key_prefix, is_admin) VALUES ($1, $2, $3, $4)"
        f" RETURNING {_COLUMNS}",
        name,
        key_hash,
        key_prefix,
        is_admin,
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
