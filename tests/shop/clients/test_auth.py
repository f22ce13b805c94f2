"""API keys resolve through a short-lived in-process cache, for known and unknown keys alike."""

from typing import Any

import asyncpg
import pytest

from shop.clients import repository as clients_repo
from shop.clients.auth import Authenticator, generate_api_key
from shop.clients.service import create_client


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every key hash the authenticator looked up in Postgres."""
    seen: list[bytes] = []
    real_lookup = clients_repo.find_active_by_key_hash

    async def counting_lookup(conn: asyncpg.Connection, key_hash: bytes) -> Any:
        seen.append(key_hash)
        return await real_lookup(conn, key_hash)

    monkeypatch.setattr(clients_repo, "find_active_by_key_hash", counting_lookup)
    return seen


async def test_a_known_key_is_looked_up_once_per_ttl(
    db: asyncpg.Pool, lookups: list[bytes]
) -> None:
    async with db.acquire() as conn:
        new = await create_client(conn, "shop", is_admin=False)
    authenticator = Authenticator(db, ttl_s=60)

    first = await authenticator.authenticate(new.api_key, acquire_timeout_s=1)
    second = await authenticator.authenticate(new.api_key, acquire_timeout_s=1)

    assert first is not None
    assert first == second
    assert first.name == "shop"
    assert len(lookups) == 1


async def test_an_unknown_key_hammering_costs_one_lookup_per_ttl(
    db: asyncpg.Pool, lookups: list[bytes]
) -> None:
    authenticator = Authenticator(db, ttl_s=60)
    bad_key = generate_api_key()

    answers = [await authenticator.authenticate(bad_key, acquire_timeout_s=1) for _ in range(50)]

    assert answers == [None] * 50
    assert len(lookups) == 1


async def test_with_no_ttl_every_request_is_checked(db: asyncpg.Pool, lookups: list[bytes]) -> None:
    authenticator = Authenticator(db, ttl_s=0)
    bad_key = generate_api_key()

    for _ in range(3):
        assert await authenticator.authenticate(bad_key, acquire_timeout_s=1) is None

    assert len(lookups) == 3
