"""`ordersctl demo-seed`: the demo catalogue and a demo key, for `make run`."""

import typer

from ordersctl.render import console
from ordersctl.services import Services, run
from shop.clients.service import NewClient
from shop.demo import seed_demo


def demo_seed_command() -> None:
    """Load the demo catalogue and print a fresh demo (admin) API key on the last line."""

    async def seed(services: Services) -> NewClient:
        async with services.connection() as conn:
            return await seed_demo(conn)

    new = run(seed)
    console.print(f"Demo catalogue loaded; demo client {new.client.id} has a new key.")
    typer.echo(new.api_key)
