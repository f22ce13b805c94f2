"""Typed dependencies: what a route needs, resolved once per request."""

from dataclasses import dataclass
from typing import Annotated

import asyncpg
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from redis.asyncio import Redis

from shared.auth import Authenticator, Client
from shared.catalogue import ProductCache
from shared.errors import Forbidden, Unauthorized
from shared.settings import Settings


@dataclass(frozen=True, slots=True)
class AppState:
    """Everything the lifespan creates once per process."""

    settings: Settings
    pool: asyncpg.Pool
    redis: Redis
    cache: ProductCache
    authenticator: Authenticator


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.orders
    return state


StateDep = Annotated[AppState, Depends(get_state)]

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer <key>`")


async def get_client(
    state: StateDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Client:
    if credentials is None:
        raise Unauthorized("Send an API key as `Authorization: Bearer <key>`.")
    client = await state.authenticator.authenticate(
        credentials.credentials, state.settings.db_pool_acquire_timeout_s
    )
    if client is None:
        raise Unauthorized("The API key is unknown or revoked.")
    return client


ClientDep = Annotated[Client, Depends(get_client)]


async def get_admin(client: ClientDep) -> Client:
    if not client.is_admin:
        raise Forbidden("This operation needs an admin API key.")
    return client


AdminDep = Annotated[Client, Depends(get_admin)]


def get_request_id(request: Request) -> str | None:
    request_id: str | None = request.scope.get("state", {}).get("request_id")
    return request_id


RequestIdDep = Annotated[str | None, Depends(get_request_id)]
