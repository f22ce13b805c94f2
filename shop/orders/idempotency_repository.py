from dataclasses import dataclass

import asyncpg

# The first argument of the two-key advisory lock: keeps these locks apart from any other use of
# advisory locks in the database. The second is a hash of (client, key); a collision between two
# keys costs one needless 409, never a wrong answer, because the primary key decides.
LOCK_NAMESPACE = 0x1DE7


def try_lock_sql(namespace: str, client_id: str, key: str) -> str:
    """The SQL that takes the in-progress lock of (client, key), given their parameters."""
    return (
        f"pg_try_advisory_xact_lock({namespace}::int,"
        f" hashtext({client_id}::bigint::text || ':' || {key}::text))"
    )


@dataclass(frozen=True, slots=True)
class StoredKey:
    endpoint: str
    request_hash: bytes
    response_status: int
    response_body: bytes
    response_location: str | None


@dataclass(frozen=True, slots=True)
class Claim:
    """The outcome of trying to take a key: `locked` is False while another request holds it."""

    locked: bool
    stored: StoredKey | None


STORED_COLUMNS = (
    "k.endpoint, k.request_hash, k.response_status, k.response_body, k.response_location"
)

# One round trip: the transaction-scoped lock that marks the key as in progress, and the response
# stored by an earlier request with the key, if any.
_CLAIM = f"""
SELECT {try_lock_sql("$3", "$1", "$2")} AS locked,
       {STORED_COLUMNS}
FROM (VALUES (1)) AS one
LEFT JOIN idempotency_keys AS k ON k.client_id = $1 AND k.key = $2
"""


async def claim(conn: asyncpg.Connection, client_id: int, key: str) -> Claim:
    """Call inside a transaction: the lock is held until it ends."""
    row = await conn.fetchrow(_CLAIM, client_id, key, LOCK_NAMESPACE)
    assert row is not None
    return Claim(locked=row["locked"], stored=stored_from(row))


def stored_from(row: asyncpg.Record) -> StoredKey | None:
    """The stored response in a row that selected STORED_COLUMNS, if there was one."""
    if row["endpoint"] is None:
        return None
    return StoredKey(
        endpoint=row["endpoint"],
        request_hash=row["request_hash"],
        response_status=row["response_status"],
        response_body=row["response_body"],
        response_location=row["response_location"],
    )


async def insert(
    conn: asyncpg.Connection,
    *,
    client_id: int,
    key: str,
    endpoint: str,
    request_hash: bytes,
    response_status: int,
    response_body: bytes,
    response_location: str | None,
) -> None:
    await conn.execute(
        "INSERT INTO idempotency_keys (client_id, key, endpoint, request_hash, response_status,"
        " response_body, response_location) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        client_id,
        key,
        endpoint,
        request_hash,
        response_status,
        response_body,
        response_location,
    )


async def delete_expired(conn: asyncpg.Connection, ttl_s: float, batch_size: int) -> int:
    """Deletes up to `batch_size` keys older than `ttl_s`, oldest first; returns how many.

    Small batches keep each statement short and its locks few while the API keeps inserting.
    The rows are found on `ix_idempotency_keys_created_at` and deleted by their ctid, stable
    while the batch holds their locks: `(client_id, key) IN (subquery)` was planned as a hash
    join against a scan of the whole table (docs/decisions/0034-bounded-tables.md).
    """
    status: str = await conn.execute(
        "DELETE FROM idempotency_keys WHERE ctid = any(ARRAY("
        " SELECT ctid FROM idempotency_keys"
        " WHERE created_at < now() - make_interval(secs => $1)"
        " ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED))",
        ttl_s,
        batch_size,
    )
    return int(status.split()[-1])
