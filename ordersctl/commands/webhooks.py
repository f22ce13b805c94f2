"""`ordersctl webhooks list|deliveries|redeliver`: endpoints, their delivery log, and sending an
event again. An operator sees every client's (`ops.webhooks`, `shop.webhooks.service` without
a client); never a secret."""

from typing import Annotated

import typer
from rich.table import Table

from ops import webhooks as webhooks_ops
from ops.display import when
from ordersctl.render import JsonOption, add_row, console, print_json
from ordersctl.services import Services, run
from shop.webhooks import service as webhooks
from shop.webhooks.repository import EndpointSummary
from shop.webhooks.schemas import WebhookAttemptPage, WebhookRedelivery

app = typer.Typer(help="Webhook endpoints and their deliveries.", no_args_is_help=True)


@app.command("list")
def list_command(
    client: Annotated[
        int | None, typer.Option("--client", help="Only this client's endpoints")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Every endpoint (never its secret), with its deliveries pending, delivered and dead."""

    async def read(services: Services) -> list[EndpointSummary]:
        return await webhooks_ops.list_endpoints(services.pool, services.settings, client)

    endpoints = run(read)
    if as_json:
        print_json(endpoints)
        return
    table = Table("id", "client", "url", "events", "pending", "delivered", "dead", "disabled")
    for endpoint in endpoints:
        add_row(
            table,
            str(endpoint.id),
            str(endpoint.client_id),
            endpoint.url,
            ", ".join(endpoint.events),
            str(endpoint.pending),
            str(endpoint.delivered),
            str(endpoint.dead),
            endpoint.disabled_reason or when(endpoint.disabled_at),
        )
    console.print(table)


@app.command("deliveries")
def deliveries_command(
    endpoint_id: Annotated[int, typer.Argument(help="The endpoint's id")],
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 50,
    as_json: JsonOption = False,
) -> None:
    """The endpoint's requests, newest first: status code, latency, error, next try."""

    async def read(services: Services) -> WebhookAttemptPage:
        return await webhooks.list_attempts(
            services.pool, services.settings, None, endpoint_id, limit=limit, cursor=None
        )

    page = run(read)
    if as_json:
        print_json(page.model_dump(mode="json")["data"])
        return
    table = Table("at", "delivery", "event", "type", "state", "status", "ms", "error", "next try")
    for attempt in page.data:
        add_row(
            table,
            when(attempt.attempted_at),
            str(attempt.delivery_id),
            attempt.event_id,
            attempt.event_type.value,
            attempt.delivery_status.value,
            "" if attempt.status_code is None else str(attempt.status_code),
            str(attempt.latency_ms),
            attempt.error or "",
            when(attempt.next_attempt_at),
        )
    console.print(table)


@app.command("redeliver")
def redeliver_command(
    event_id: Annotated[str, typer.Argument(help="The event's id, evt_...")],
    as_json: JsonOption = False,
) -> None:
    """Send an event again to its client's endpoints that take its type (same webhook-id)."""

    async def redeliver(services: Services) -> WebhookRedelivery:
        return await webhooks.redeliver_event(services.pool, services.settings, None, event_id)

    answer = run(redeliver)
    if as_json:
        print_json(answer.model_dump(mode="json"))
        return
    console.print(
        f"Event {answer.event_id} queued for {answer.deliveries} endpoint(s); the workers'"
        " relays hand it over within OUTBOX_SWEEP_INTERVAL_S.",
        highlight=False,
    )
