"""`ordersctl outbox`: rows waiting to be handed to the queue, and how fast they go."""

from ops.outbox import outbox_status
from ordersctl.render import JsonOption, WatchOption, console, outbox_table, show
from ordersctl.services import Services, run
from shop.jobs.outbox_repository import OutboxStats


def outbox_command(as_json: JsonOption = False, watch: WatchOption = None) -> None:
    """Pending rows, the oldest pending row's age, and the delivery rate."""

    async def read(services: Services) -> OutboxStats:
        return await outbox_status(services.pool, services.settings)

    show(lambda: run(read), lambda stats: console.print(outbox_table(stats)), as_json, watch)
