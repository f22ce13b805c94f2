"""`ordersctl clients create|list|revoke`: API clients and their keys."""

from typing import Annotated, Any

import typer
from rich.table import Table

from ordersctl.render import JsonOption, add_row, console, print_json
from ordersctl.services import Services, run
from shop.clients import repository as clients_repo
from shop.clients.service import NewClient, create_client

app = typer.Typer(help="API clients and their keys.", no_args_is_help=True)


def _client_json(row: clients_repo.ClientRow) -> dict[str, Any]:
    """A client without its key hash, which never leaves the database."""
    return {
        "id": row.id,
        "name": row.name,
        "key_prefix": row.key_prefix,
        "is_admin": row.is_admin,
        "created_at": row.created_at,
        "revoked_at": row.revoked_at,
    }


@app.command("create")
def create_command(
    name: Annotated[str, typer.Argument(help="Who the key is for")],
    admin: Annotated[bool, typer.Option("--admin", help="May manage the catalogue")] = False,
    as_json: JsonOption = False,
) -> None:
    """Create a client; its API key is printed once, alone on the last line."""

    async def create(services: Services) -> NewClient:
        async with services.connection() as conn:
            return await create_client(conn, name, is_admin=admin)

    new = run(create)
    if as_json:
        print_json({**_client_json(new.client), "api_key": new.api_key})
        return
    console.print(
        f"Created client {new.client.id} ({new.client.name}"
        f"{', admin' if new.client.is_admin else ''}). Store the key now: it is not kept.",
        highlight=False,
    )
    typer.echo(new.api_key)


@app.command("list")
def list_command(as_json: JsonOption = False) -> None:
    """Every client with its key prefix and whether it is revoked."""

    async def read(services: Services) -> list[clients_repo.ClientRow]:
        async with services.connection() as conn:
            return await clients_repo.list_all(conn)

    rows = run(read)
    if as_json:
        print_json([_client_json(row) for row in rows])
        return
    table = Table("id", "name", "key prefix", "admin", "created", "revoked")
    for row in rows:
        add_row(
            table,
            str(row.id),
            row.name,
            row.key_prefix + "…",
            "yes" if row.is_admin else "",
            row.created_at.isoformat(timespec="seconds"),
            row.revoked_at.isoformat(timespec="seconds") if row.revoked_at else "",
        )
    console.print(table)


@app.command("revoke")
def revoke_command(
    client_id: Annotated[int, typer.Argument(help="The client's id")],
    as_json: JsonOption = False,
) -> None:
    """Revoke a client's key (API processes stop accepting it within AUTH_CACHE_TTL_S)."""

    async def revoke(services: Services) -> bool:
        async with services.connection() as conn:
            return await clients_repo.revoke(conn, client_id)

    revoked = run(revoke)
    if as_json:
        print_json({"client_id": client_id, "revoked": revoked})
    elif revoked:
        console.print(f"Revoked client {client_id}.")
    else:
        console.print(f"No active client {client_id}.")
    if not revoked:
        raise typer.Exit(1)
