"""Creating and revoking API clients. A key is shown once, when created, and stored as a hash."""

from dataclasses import dataclass

import asyncpg

from shop.clients import repository as clients_repo
from shop.clients.auth import display_prefix, generate_api_key, hash_api_key
from shop.clients.repository import ClientRow
from shop.models import ConsoleRole


@dataclass(frozen=True, slots=True)
class NewClient:
    client: ClientRow
    api_key: str


async def create_client(
    conn: asyncpg.Connection,
    name: str,
    *,
    is_admin: bool,
    console_role: ConsoleRole | None = ConsoleRole.OPERATOR,
) -> NewClient:
    """A new client and its key. Only an admin key has a console role (operator unless told)."""
    api_key = generate_api_key()
    client = await clients_repo.insert(
        conn,
        name=name,
        key_hash=hash_api_key(api_key),
        key_prefix=display_prefix(api_key),
        is_admin=is_admin,
        console_role=console_role.value if is_admin and console_role is not None else None,
    )
    return NewClient(client=client, api_key=api_key)
