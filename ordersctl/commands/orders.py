"""`ordersctl order`: one order's timeline."""

from typing import Annotated

import typer
from rich.table import Table

from kit.errors import NotFound
from ops.timeline import OrderTimeline, order_timeline
from ordersctl.render import JsonOption, WatchOption, add_row, console, show
from ordersctl.services import Services, run


def order_command(
    order_id: Annotated[int, typer.Argument(help="The order's id")],
    as_json: JsonOption = False,
    watch: WatchOption = None,
) -> None:
    """An order's timeline: state changes, its jobs and their outcomes, the email sent."""

    async def read(services: Services) -> OrderTimeline:
        timeline = await order_timeline(services.pool, services.queue, services.settings, order_id)
        if timeline is None:
            raise NotFound(f"There is no order {order_id}.")
        return timeline

    show(lambda: run(read), _render, as_json, watch)


def _render(timeline: OrderTimeline) -> None:
    table = Table(
        "at",
        "event",
        "detail",
        title=f"Order {timeline.order_id}: {timeline.status}"
        f" (request {timeline.request_id or '-'})",
    )
    for event in timeline.events:
        add_row(table, event.at.isoformat(timespec="milliseconds"), event.event, event.detail)
    console.print(table)
