"""API keys: random tokens shown once, stored as SHA-256, looked up through a short-lived cache."""

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import asyncpg

from kit.db import connection
from shop.clients import repository as clients_repo

KEY_PREFIX = "ord_"


@dataclass(frozen=True, slots=True)
class Client:
    id: int
    name: str
    is_admin: bool


def generate_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(api_key: str) -> bytes:
    return hashlib.sha256(api_key.encode()).digest()


def display_prefix(api_key: str) -> str:
    return api_key[: len(KEY_PREFIX) + 6]


class Authenticator:
    """Resolves API keys to clients, caching answers in-process for `ttl_s` seconds.

    The cache keeps Postgres off the hot path of every request; the price is that a revoked key
    keeps working for at most `ttl_s` seconds in each process. Unknown keys are cached too, so a
    misconfigured client hammering with a bad key costs one lookup per TTL, not one per request
    (a key cannot become valid meanwhile: new keys are fresh random tokens).
    """

    def __init__(self, pool: asyncpg.Pool, ttl_s: float, max_entries: int = 10_000) -> None:
        self._pool = pool
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._cache: dict[bytes, tuple[float, Client | None]] = {}

    def _cached(self, key_hash: bytes, now: float) -> tuple[Client | None] | None:
        """(the cached answer,) while it is fresh, else None."""
        cached = self._cache.get(key_hash)
        return None if cached is None or cached[0] <= now else (cached[1],)

    def cached_client(self, api_key: str) -> Client | None:
        """The client of a key this cache holds as valid; None for anything else (unknown,
        revoked, expired from the cache or never seen), without looking anything up."""
        cached = self._cached(hash_api_key(api_key), time.monotonic())
        return None if cached is None else cached[0]

    async def authenticate(self, api_key: str, acquire_timeout_s: float) -> Client | None:
        key_hash = hash_api_key(api_key)
        now = time.monotonic()
        cached = self._cached(key_hash, now)
        if cached is not None:
            return cached[0]
        async with connection(self._pool, acquire_timeout_s) as conn:
            row = await clients_repo.find_active_by_key_hash(conn, key_hash)
        # The lookup is by hash already; comparing again in constant time guards against a
        # collation or index quirk ever matching a different value.
        client = (
            None
            if row is None or not hmac.compare_digest(row.key_hash, key_hash)
            else Client(id=row.id, name=row.name, is_admin=row.is_admin)
        )
        if len(self._cache) >= self._max_entries:
            self._cache.clear()
        self._cache[key_hash] = (now + self._ttl_s, client)
        return client
