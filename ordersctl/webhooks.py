"""`ordersctl webhooks`: endpoints, their delivery log, and sending an event again.

Reads through `ops.webhooks` and `shop.webhooks.service` (as the API does, without a client:
an operator sees every client's); this module parses, calls, renders.
"""

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import asyncpg
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from kit.db import UNAVAILABLE_ERRORS, create_pool
from kit.errors import DomainError
from kit.settings import Settings, get_settings
from ops import webhooks as webhooks_ops
from ops.views import jsonable
from shop.webhooks import service as webhooks

T = TypeVar("T")

app = typer.Typer(help="Webhook endpoints and their deliveries.", no_args_is_help=True)
console = Console()
err_console = Console(stderr=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
# As `ordersctl queue` and `health`: a service that could not be read.
_UNKNOWN = 3


def _run(work: Callable[[asyncpg.Pool, Settings], Awaitable[T]]) -> T:
    async def run() -> T:
        settings = get_settings()
        pool = await create_pool(
            settings.model_copy(update={"db_pool_min_size": 0, "db_pool_max_size": 2}),
            application_name="ordersctl",
        )
        try:
            return await work(pool, settings)
        finally:
            await pool.close()

    try:
        return asyncio.run(run())
    except DomainError as exc:
        err_console.print(f"error: {exc.detail}", highlight=False, markup=False)
        raise typer.Exit(1) from exc
    except UNAVAILABLE_ERRORS as exc:
        err_console.print(f"error: Postgres is unavailable: {exc!r}", highlight=False)
        raise typer.Exit(_UNKNOWN) from exc


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(jsonable(data), indent=2))


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if hasattr(value, "isoformat"):
        return str(value.isoformat(timespec="seconds"))
    return escape(str(value))


@app.command("list")
def list_command(
    client: Annotated[
        int | None, typer.Option("--client", help="Only this client's endpoints")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Every endpoint (never its secret), with its deliveries pending, delivered and dead."""
    endpoints = _run(lambda pool, settings: webhooks_ops.list_endpoints(pool, settings, client))
    if as_json:
        _print_json(endpoints)
        return
    table = Table("id", "client", "url", "events", "pending", "delivered", "dead", "disabled")
    for endpoint in endpoints:
        table.add_row(
            str(endpoint.id),
            str(endpoint.client_id),
            _cell(endpoint.url),
            _cell(", ".join(endpoint.events)),
            str(endpoint.pending),
            str(endpoint.delivered),
            str(endpoint.dead),
            _cell(endpoint.disabled_reason or endpoint.disabled_at),
        )
    console.print(table)


@app.command("deliveries")
def deliveries_command(
    endpoint_id: Annotated[int, typer.Argument(help="The endpoint's id")],
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 50,
    as_json: JsonOption = False,
) -> None:
    """The endpoint's requests, newest first: status code, latency, error, next try."""
    page = _run(
        lambda pool, settings: webhooks.list_attempts(
            pool, settings, None, endpoint_id, limit=limit, cursor=None
        )
    )
    if as_json:
        _print_json(page.model_dump(mode="json")["data"])
        return
    table = Table("at", "delivery", "event", "type", "state", "status", "ms", "error", "next try")
    for attempt in page.data:
        table.add_row(
            _cell(attempt.attempted_at),
            str(attempt.delivery_id),
            _cell(attempt.event_id),
            _cell(attempt.event_type.value),
            _cell(attempt.delivery_status.value),
            _cell(attempt.status_code),
            str(attempt.latency_ms),
            _cell(attempt.error),
            _cell(attempt.next_attempt_at),
        )
    console.print(table)


@app.command("redeliver")
def redeliver_command(
    event_id: Annotated[str, typer.Argument(help="The event's id, evt_...")],
    as_json: JsonOption = False,
) -> None:
    """Send an event again to its client's endpoints that take its type (same webhook-id)."""
    answer = _run(lambda pool, settings: webhooks.redeliver_event(pool, settings, None, event_id))
    if as_json:
        _print_json(answer.model_dump(mode="json"))
        return
    console.print(
        f"Event {answer.event_id} queued for {answer.deliveries} endpoint(s); the workers'"
        " relays hand it over within OUTBOX_SWEEP_INTERVAL_S.",
        highlight=False,
    )
