"""Typed dependencies: what a route needs, resolved once per request."""

import math
from dataclasses import dataclass
from typing import Annotated

import asyncpg
from fastapi import Depends, Header, Request
from fastapi.security import HTTPBearer
from redis.asyncio import Redis
from starlette.requests import HTTPConnection

from api.middleware import add_response_headers
from api.rate_limit import Limiter
from kit.errors import Forbidden, TooManyRequests, Unauthorized
from kit.settings import Settings
from shop.catalogue.cache import ProductCache
from shop.clients.auth import Authenticator, Client
from shop.jobs.relay import RelayWaker
from shop.orders.group_commit import OrderGroupCommit
from shop.orders.idempotency import KEY_MAX_LENGTH, KEY_PATTERN, normalise_key


@dataclass(frozen=True, slots=True)
class AppState:
    """Everything the lifespan creates once per process."""

    settings: Settings
    pool: asyncpg.Pool
    redis: Redis
    cache: ProductCache
    authenticator: Authenticator
    rate_limiter: Limiter
    relay_waker: RelayWaker
    order_writes: OrderGroupCommit


# Dependencies are `async def` even when they await nothing: FastAPI runs a plain `def`
# dependency in the threadpool, a thread hand-off on every request
# (docs/decisions/0002-async-dependencies.md).
async def get_state(request: Request) -> AppState:
    return app_state(request)


def app_state(request: HTTPConnection) -> AppState:
    """StateDep without a dependency node, for the hottest routes: FastAPI spends ~8 µs of CPU
    per request on each node it resolves, even one this trivial
    (docs/decisions/0003-few-dependency-nodes.md)."""
    state: AppState = request.app.state.orders
    return state


StateDep = Annotated[AppState, Depends(get_state)]


class ApiKeyBearer(HTTPBearer):
    """The caller, authenticated and within its rate (RATE_LIMIT_PER_S per key, across the API
    processes or in each, RATE_LIMIT_SCOPE).

    The security scheme authenticates as well, rather than being a dependency of one that does:
    FastAPI's per-request cost grows with every dependency node, and this is on every v1
    request (docs/decisions/0003-few-dependency-nodes.md). OpenAPI still documents it as the
    `HTTPBearer` scheme.
    """

    # The client rather than HTTPBearer's credentials: FastAPI hands routes what this returns.
    async def __call__(self, request: HTTPConnection) -> Client:  # type: ignore[override]
        credentials = await super().__call__(request)
        if credentials is None:
            raise Unauthorized("Send an API key as `Authorization: Bearer <key>`.")
        state = app_state(request)
        client = await state.authenticator.authenticate(
            credentials.credentials, state.settings.db_pool_acquire_timeout_s
        )
        if client is None:
            raise Unauthorized("The API key is unknown or revoked.")
        decision = await state.rate_limiter.acquire(client.id)
        add_response_headers(request.scope, state.rate_limiter.gcra.headers(decision))
        if decision.wait_s > 0:
            raise TooManyRequests(
                "This API key is over its request rate; retry after the Retry-After delay.",
                retry_after_s=max(1, math.ceil(decision.wait_s)),
            )
        return client


_authenticate = ApiKeyBearer(
    auto_error=False,
    # The scheme's name in OpenAPI, as before; it would default to the class's name.
    scheme_name="HTTPBearer",
    description="An API key: `Authorization: Bearer <key>`",
)

ClientDep = Annotated[Client, Depends(_authenticate)]


async def get_admin(client: ClientDep) -> Client:
    if not client.is_admin:
        raise Forbidden("This operation needs an admin API key.")
    return client


AdminDep = Annotated[Client, Depends(get_admin)]


async def get_idempotency_key(
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            pattern=KEY_PATTERN,
            max_length=KEY_MAX_LENGTH,
            description=(
                "Makes the request safe to retry: a retry with the same key and body gets the"
                " first response again (with `Idempotent-Replayed: true`) and has no second"
                " effect. Keys are kept for 24 hours, per API key; printable ASCII, up to 255"
                " characters (a UUID is a good key)."
            ),
        ),
    ] = None,
) -> str | None:
    return None if idempotency_key is None else normalise_key(idempotency_key)


IdempotencyKeyDep = Annotated[str | None, Depends(get_idempotency_key)]


async def get_request_id(request: Request) -> str | None:
    return request_id_of(request)


def request_id_of(request: Request) -> str | None:
    """RequestIdDep without a dependency node (see app_state)."""
    request_id: str | None = request.scope.get("state", {}).get("request_id")
    return request_id


RequestIdDep = Annotated[str | None, Depends(get_request_id)]
