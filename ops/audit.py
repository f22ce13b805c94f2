"""Who did what to what, when, and how it ended: every action taken in the operator console."""

from enum import StrEnum

import asyncpg

from kit.db import connection
from kit.settings import Settings
from ops import audit_repository as audit_repo
from ops.audit_repository import AuditEntry
from ops.redaction import redact_text


class AuditOutcome(StrEnum):
    OK = "ok"
    # Not attempted: the role may not act, or the CSRF token did not match.
    REFUSED = "refused"
    # Attempted and raised (not found, conflict, a service down).
    FAILED = "failed"


async def record(
    pool: asyncpg.Pool,
    settings: Settings,
    *,
    client_id: int | None,
    client_name: str,
    role: str | None,
    action: str,
    target: str,
    outcome: AuditOutcome,
    detail: str | None = None,
) -> AuditEntry:
    async with connection(pool, settings.db_pool_acquire_timeout_s) as conn:
        return await audit_repo.insert(
            conn,
            client_id=client_id,
            client_name=client_name,
            role=role,
            action=action,
            target=redact_text(target),
            outcome=outcome.value,
            detail=None if detail is None else redact_text(detail),
        )


async def recent(
    pool: asyncpg.Pool, settings: Settings, *, before_id: int | None = None, limit: int = 50
) -> list[AuditEntry]:
    async with connection(pool, settings.db_pool_acquire_timeout_s) as conn:
        return await audit_repo.list_recent(conn, before_id=before_id, limit=limit)
