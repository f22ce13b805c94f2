import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import asyncpg
import typer
from rich.console import Console
from rich.table import Table

from shared.clients import create_client
from shared.demo import seed_demo
from shared.repositories import clients as clients_repo
from shared.settings import get_settings

T = TypeVar("T")

app = typer.Typer(help="Operate the orders backend.", no_args_is_help=True)
clients_app = typer.Typer(help="API clients and their keys.", no_args_is_help=True)
app.add_typer(clients_app, name="clients")

console = Console()


def _with_connection(work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    async def run() -> T:
        settings = get_settings()
        conn = await asyncpg.connect(
            settings.database_url.get_secret_value(), timeout=settings.db_connect_timeout_s
        )
        try:
            return await work(conn)
        finally:
            await conn.close()

    return asyncio.run(run())


@clients_app.command("create")
def clients_create(
    name: Annotated[str, typer.Argument(help="Who the key is for")],
    admin: Annotated[bool, typer.Option("--admin", help="May manage the catalogue")] = False,
) -> None:
    """Create a client; its API key is printed once, alone on the last line."""
    new = _with_connection(lambda conn: create_client(conn, name, is_admin=admin))
    console.print(
        f"Created client {new.client.id} ({new.client.name}"
        f"{', admin' if new.client.is_admin else ''}). Store the key now: it is not kept.",
        highlight=False,
    )
    typer.echo(new.api_key)


@clients_app.command("list")
def clients_list() -> None:
    """Every client with its key prefix and whether it is revoked."""
    rows = _with_connection(clients_repo.list_all)
    table = Table("id", "name", "key prefix", "admin", "created", "revoked")
    for row in rows:
        table.add_row(
            str(row.id),
            row.name,
            row.key_prefix + "…",
            "yes" if row.is_admin else "",
            row.created_at.isoformat(timespec="seconds"),
            row.revoked_at.isoformat(timespec="seconds") if row.revoked_at else "",
        )
    console.print(table)


@clients_app.command("revoke")
def clients_revoke(client_id: Annotated[int, typer.Argument(help="The client's id")]) -> None:
    """Revoke a client's key (API processes stop accepting it within AUTH_CACHE_TTL_S)."""
    revoked = _with_connection(lambda conn: clients_repo.revoke(conn, client_id))
    if not revoked:
        console.print(f"No active client {client_id}.")
        raise typer.Exit(1)
    console.print(f"Revoked client {client_id}.")


@app.command("demo-seed")
def demo_seed() -> None:
    """Load the demo catalogue and print a fresh demo (admin) API key on the last line."""
    new = _with_connection(seed_demo)
    console.print(f"Demo catalogue loaded; demo client {new.client.id} has a new key.")
    typer.echo(new.api_key)
