"""`ordersctl workers`: the live workers, from their heartbeats."""

from ops.queue import WorkerInfo, live_workers
from ordersctl.render import JsonOption, WatchOption, console, show, workers_table
from ordersctl.services import Services, run


def workers_command(as_json: JsonOption = False, watch: WatchOption = None) -> None:
    """Each live worker: last heartbeat, jobs running, done, failed and retried."""

    async def read(services: Services) -> list[WorkerInfo]:
        return await live_workers(services.queue, services.settings.queue_name)

    show(lambda: run(read), lambda workers: console.print(workers_table(workers)), as_json, watch)
