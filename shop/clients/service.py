"""Creating and revoking API clients. A key is shown once, when created, and stored as a hash."""

from dataclasses import dataclass

import asyncpg

from shop.clients import repository as clients_repo
from shop.clients.auth import display_prefix, generate_api_key, hash_api_key
from shop.clients.repository import ClientRow


@dataclass(frozen=True, slots=True)
class NewClient:
    client: ClientRow
    api_key: str


async def create_client(conn: asyncpg.Connection, name: str, *, is_admin: bool) -> NewClient:
    api_key = generate_api_key()
    client = await clients_repo.insert(
        conn,
        name=name,
        key_hash=hash_api_key(api_key),
        key_prefix=display_prefix(api_key),
        is_admin=is_admin,
    )
    return NewClient(client=client, api_key=api_key)
