"""Idempotency-Key (the IETF httpapi draft, with Stripe's semantics): a client may retry a
request with the same key, and gets the first request's response while the effect happens once.

The effect and the stored response commit together, in one transaction that holds an advisory
lock on (client, key) while it runs: a second request with the key finds the lock taken (409);
a later one finds the stored response and gets it replayed. A crash can therefore never leave an
effect without its key, nor a key without its effect; the key's primary key is the last word.
`run_once` does this for any work in a transaction; placing an order does the same in a single
statement (shop/orders/service.py), to keep it at two round trips. Only successes are stored: a
failed request wrote nothing, so running it again is safe."""

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Self

import asyncpg

from kit.errors import InvalidRequest, RequestInProgress
from kit.purge import purge_in_batches
from kit.settings import Settings
from shop.orders import idempotency_repository as idempotency_repo

# Printable ASCII without spaces, up to 255 characters: UUIDs, ULIDs and base64 tokens fit.
KEY_PATTERN = r"^[!-~]{1,255}$"
KEY_MAX_LENGTH = 255

IN_PROGRESS = "A request with this Idempotency-Key is still being processed; retry shortly."
JUST_COMPLETED = (
    "A request with this Idempotency-Key has just completed; retry to get its response."
)


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """What the API answers, whether it just happened or is a replay of the first answer."""

    status: int
    body: bytes
    location: str | None = None
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class IdempotentRequest:
    client_id: int
    key: str
    # Method and path, e.g. "POST /v1/orders/42/cancel": a key names one request, not a family.
    endpoint: str
    request_hash: bytes

    @classmethod
    def of(cls, client_id: int, key: str, endpoint: str, canonical_body: bytes = b"") -> Self:
        digest = hashlib.sha256(endpoint.encode() + b"\n" + canonical_body).digest()
        return cls(client_id=client_id, key=key, endpoint=endpoint, request_hash=digest)


def normalise_key(raw: str) -> str:
    """The key itself: the draft sends it as a structured-field string (`"abc"`), Stripe bare."""
    key = raw[1:-1] if len(raw) >= 2 and raw[0] == raw[-1] == '"' else raw
    if not key:
        raise InvalidRequest("The Idempotency-Key header is empty.")
    return key


async def run_once(
    conn: asyncpg.Connection,
    request: IdempotentRequest,
    work: Callable[[asyncpg.Connection], Awaitable[StoredResponse]],
) -> StoredResponse:
    """Runs `work` in a transaction unless the key has a stored response, which is replayed.

    `work` must do all its writes on `conn`, which is inside the transaction.
    """
    async with conn.transaction():
        claim = await idempotency_repo.claim(conn, request.client_id, request.key)
        if not claim.locked:
            raise RequestInProgress(IN_PROGRESS)
        if claim.stored is not None:
            return replay(request, claim.stored)
        response = await work(conn)
        try:
            await idempotency_repo.insert(
                conn,
                client_id=request.client_id,
                key=request.key,
                endpoint=request.endpoint,
                request_hash=request.request_hash,
                response_status=response.status,
                response_body=response.body,
                response_location=response.location,
            )
        except asyncpg.UniqueViolationError as exc:
            # The first request committed between this transaction's snapshot and its lock.
            # Raising rolls this one back whole; the client's retry gets the stored response.
            raise RequestInProgress(JUST_COMPLETED) from exc
    return response


def replay(request: IdempotentRequest, stored: idempotency_repo.StoredKey) -> StoredResponse:
    """The stored response, if `request` is the request that stored it; else a 422."""
    if stored.endpoint != request.endpoint:
        raise InvalidRequest(
            f"This Idempotency-Key was used for another request ({stored.endpoint});"
            " use a new key for a new request."
        )
    if stored.request_hash != request.request_hash:
        raise InvalidRequest(
            "This Idempotency-Key was used with a different request body;"
            " use a new key for a new request."
        )
    return StoredResponse(
        status=stored.response_status,
        body=stored.response_body,
        location=stored.response_location,
        replayed=True,
    )


async def purge_expired(pool: asyncpg.Pool, settings: Settings, *, budget_s: float) -> int:
    """Deletes keys older than IDEMPOTENCY_KEY_TTL_S in bounded batches (kit.purge) for at most
    about `budget_s`; returns how many went. What is left waits for the next run."""
    return await purge_in_batches(
        pool,
        settings,
        idempotency_repo.delete_expired,
        settings.idempotency_key_ttl_s,
        budget_s=budget_s,
        what="idempotency_keys",
    )
