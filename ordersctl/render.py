"""How `ordersctl` shows what it reads: rich tables, `--json`, and `--watch`."""

import json
import time
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ops.display import age, jsonable, short, when
from ops.health import Level
from ops.queue import JobInfo, WorkerInfo
from shop.jobs.outbox_repository import OutboxStats

T = TypeVar("T")

console = Console()
err_console = Console(stderr=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
WatchOption = Annotated[
    float | None,
    typer.Option(
        "--watch", min=0.1, help="Show again every SECONDS until Ctrl-C.", metavar="SECONDS"
    ),
]


def print_json(data: Any, *, compact: bool = False) -> None:
    typer.echo(json.dumps(jsonable(data), indent=None if compact else 2, sort_keys=False))


def show(
    fetch: Callable[[], T],
    render: Callable[[T], None],
    as_json: bool,
    watch: float | None,
    exit_code: Callable[[T], int] = lambda _: Level.OK,
) -> None:
    """Fetches and renders once, or every `watch` seconds until Ctrl-C; exits with the last code.

    With `--json --watch`, each round is one JSON document on one line, ready for `jq`.
    """
    code: int = Level.OK
    try:
        while True:
            data = fetch()
            code = exit_code(data)
            if as_json:
                print_json(data, compact=watch is not None)
            else:
                if watch is not None and console.is_terminal:
                    console.clear()
                render(data)
            if watch is None:
                break
            time.sleep(watch)
    except KeyboardInterrupt:
        pass
    raise typer.Exit(code)


def add_row(table: Table, *cells: str) -> None:
    """Adds a row of plain text: job data such as "[Errno 111]" is not rich markup."""
    table.add_row(*(escape(cell) for cell in cells))


# Tables more than one command shows (`top` shows them all).


def jobs_table(jobs: list[JobInfo], title: str = "Jobs") -> Table:
    table = Table("job id", "status", "function", "args", "tries", "when", "error", title=title)
    for job in jobs:
        at = job.finished_at or job.started_at or job.due_at or job.enqueued_at
        add_row(
            table,
            job.job_id,
            job.status + (f" → {job.redriven_job_id}" if job.redriven_job_id else ""),
            job.function,
            short(job.args, 30),
            "" if job.tries is None else str(job.tries),
            "" if at is None else f"{at:%m-%d %H:%M:%S}",
            short(job.error or "", 50),
        )
    return table


def workers_table(workers: list[WorkerInfo]) -> Table:
    table = Table(
        "worker", "pid", "started", "last heartbeat", "running", "done", "failed", "retried",
        title=f"Workers ({len(workers)} live)",
    )  # fmt: skip
    for worker in workers:
        add_row(
            table,
            worker.worker_id,
            str(worker.pid),
            when(worker.started_at),
            f"{age(worker.heartbeat_age_s)} ago",
            str(worker.running),
            str(worker.done),
            str(worker.failed),
            str(worker.retried),
        )
    return table


def outbox_table(stats: OutboxStats) -> Table:
    table = Table(
        "pending", "failing", "oldest pending", "delivered 5m", "delivered 1h", "rate /min",
        "last error", title="Outbox",
    )  # fmt: skip
    add_row(
        table,
        str(stats.pending),
        str(stats.failing),
        age(stats.oldest_pending_age_s),
        str(stats.delivered_last_5m),
        str(stats.delivered_last_1h),
        f"{stats.delivered_last_5m / 5:.1f}",
        short(stats.last_error or "", 40),
    )
    return table
