"""Console sessions, kept in Redis and referenced by a random token in a cookie.

Redis rather than Postgres: a session's expiry is the key's own TTL (no table to sweep), and the
console cannot work without Redis anyway, as every page reads the queue. Keys hold the token's
SHA-256, not the token, so whoever reads Redis cannot replay a cookie.
"""

import hashlib
import secrets
from dataclasses import dataclass

from redis.asyncio import Redis

SESSION_KEY_PREFIX = "console:session:"


@dataclass(frozen=True, slots=True)
class Session:
    token: str
    client_id: int
    # Sent back in every form as a hidden field, compared in constant time.
    csrf_token: str
    # A one-time message for the next page (the outcome of the last action).
    flash: str | None


def _key(token: str) -> str:
    return SESSION_KEY_PREFIX + hashlib.sha256(token.encode()).hexdigest()


class SessionStore:
    def __init__(self, redis: Redis, ttl_s: int) -> None:
        self._redis = redis
        self.ttl_s = ttl_s

    async def create(self, client_id: int) -> Session:
        token = secrets.token_urlsafe(32)
        session = Session(token, client_id, secrets.token_urlsafe(32), None)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(_key(token), mapping={"client_id": client_id, "csrf": session.csrf_token})
            pipe.expire(_key(token), self.ttl_s)
            await pipe.execute()
        return session

    async def load(self, token: str) -> Session | None:
        """The session of `token`, its flash message taken (shown once); None once expired."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(_key(token))
            pipe.hdel(_key(token), "flash")
            fields, _ = await pipe.execute()
        if not fields or b"client_id" not in fields:
            return None
        flash = fields.get(b"flash")
        return Session(
            token,
            int(fields[b"client_id"]),
            fields[b"csrf"].decode(),
            None if flash is None else flash.decode(),
        )

    async def set_flash(self, token: str, message: str) -> None:
        # Should the session have expired meanwhile, the HSET makes a key without a client
        # (never loaded as a session), and NX gives that key a TTL, so it does not stay.
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(_key(token), "flash", message)
            pipe.expire(_key(token), self.ttl_s, nx=True)
            await pipe.execute()

    async def delete(self, token: str) -> None:
        await self._redis.delete(_key(token))
