"""`ordersctl top`: queue, workers, outbox and the latest dead jobs, redrawn until Ctrl-C."""

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table

from ops import queue as queue_reader
from ops.display import age
from ops.jobs import list_jobs
from ops.outbox import outbox_status
from ops.queue import JobInfo, QueueStats, WorkerInfo
from ordersctl.render import add_row, console, jobs_table, outbox_table, workers_table
from ordersctl.services import Services, run
from shop.jobs.keys import JobOutcome
from shop.jobs.outbox_repository import OutboxStats


@dataclass(frozen=True, slots=True)
class Overview:
    queue: QueueStats
    workers: list[WorkerInfo]
    outbox: OutboxStats
    failures: list[JobInfo]


def top_command(
    interval: Annotated[float, typer.Option(min=0.1, help="Seconds between refreshes.")] = 2.0,
    iterations: Annotated[
        int | None, typer.Option(min=1, help="Stop after this many refreshes (default: Ctrl-C).")
    ] = None,
) -> None:
    """A live full-screen view: queue, workers, outbox and the latest failures."""
    count = 0
    try:
        with Live(console=console, screen=console.is_terminal, auto_refresh=False) as live:
            while True:
                live.update(_view(run(_read)), refresh=True)
                count += 1
                if iterations is not None and count >= iterations:
                    break
                time.sleep(interval)
    except KeyboardInterrupt:
        pass


async def _read(services: Services) -> Overview:
    settings = services.settings
    return Overview(
        queue=await queue_reader.queue_stats(services.queue, settings.queue_name),
        workers=await queue_reader.live_workers(services.queue, settings.queue_name),
        outbox=await outbox_status(services.pool, settings),
        failures=await list_jobs(
            services.pool, services.queue, settings, status=queue_reader.DEAD, limit=5
        ),
    )


def _view(overview: Overview) -> Group:
    stats = overview.queue
    queue = Table(
        "queue", "queued", "deferred", "in progress", "oldest due", "complete 1h",
        "failed 1h", title=f"ordersctl top · {datetime.now().astimezone():%H:%M:%S}",
    )  # fmt: skip
    add_row(
        queue,
        stats.queue,
        str(stats.queued),
        str(stats.deferred),
        str(stats.in_progress),
        age(stats.oldest_due_age_s),
        str(stats.last_hour.get(JobOutcome.COMPLETE, 0)),
        str(stats.last_hour.get(JobOutcome.FAILED, 0)),
    )
    return Group(
        queue,
        workers_table(overview.workers),
        outbox_table(overview.outbox),
        jobs_table(overview.failures, title="Latest dead jobs"),
    )
