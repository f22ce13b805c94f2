"""`ordersctl clients create|list|revoke|console-role`: API clients, their keys, console roles."""

from typing import Annotated, Any

import typer
from rich.table import Table

from ordersctl.render import JsonOption, add_row, console, print_json
from ordersctl.services import Services, run
from shop.clients import repository as clients_repo
from shop.clients.service import NewClient, create_client
from shop.models import ConsoleRole

app = typer.Typer(help="API clients and their keys.", no_args_is_help=True)


def _client_json(row: clients_repo.ClientRow) -> dict[str, Any]:
    """A client without its key hash, which never leaves the database."""
    return {
        "id": row.id,
        "name": row.name,
        "key_prefix": row.key_prefix,
        "is_admin": row.is_admin,
        "console_role": row.console_role,
        "created_at": row.created_at,
        "revoked_at": row.revoked_at,
    }


@app.command("create")
def create_command(
    name: Annotated[str, typer.Argument(help="Who the key is for")],
    admin: Annotated[bool, typer.Option("--admin", help="May manage the catalogue")] = False,
    console_role: Annotated[
        ConsoleRole,
        typer.Option("--console-role", help="With --admin: what the key may do in the console."),
    ] = ConsoleRole.OPERATOR,
    as_json: JsonOption = False,
) -> None:
    """Create a client; its API key is printed once, alone on the last line."""

    async def create(services: Services) -> NewClient:
        async with services.connection() as conn:
            return await create_client(conn, name, is_admin=admin, console_role=console_role)

    new = run(create)
    if as_json:
        print_json({**_client_json(new.client), "api_key": new.api_key})
        return
    admin_note = f", admin, console {new.client.console_role}" if new.client.is_admin else ""
    console.print(
        f"Created client {new.client.id} ({new.client.name}{admin_note})."
        " Store the key now: it is not kept.",
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
    table = Table("id", "name", "key prefix", "admin", "console", "created", "revoked")
    for row in rows:
        add_row(
            table,
            str(row.id),
            row.name,
            row.key_prefix + "…",
            "yes" if row.is_admin else "",
            row.console_role or "",
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


@app.command("console-role")
def console_role_command(
    client_id: Annotated[int, typer.Argument(help="An admin client's id")],
    role: Annotated[
        str, typer.Argument(help="viewer (looks), operator (also acts) or none (no console)")
    ],
    as_json: JsonOption = False,
) -> None:
    """Set what an admin key may do in the operator console (open sessions follow at once)."""
    if role != "none" and role not in {r.value for r in ConsoleRole}:
        console.print("error: the role is viewer, operator or none", highlight=False)
        raise typer.Exit(2)

    async def update(services: Services) -> bool:
        async with services.connection() as conn:
            return await clients_repo.set_console_role(
                conn, client_id, None if role == "none" else role
            )

    updated = run(update)
    if as_json:
        print_json({"client_id": client_id, "console_role": role, "updated": updated})
    elif updated:
        console.print(f"Client {client_id} is now console {role}.", highlight=False)
    else:
        console.print(f"No active admin client {client_id}.", highlight=False)
    if not updated:
        raise typer.Exit(1)
