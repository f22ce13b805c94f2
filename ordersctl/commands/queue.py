"""`ordersctl queue` (depth, age and outcomes against alert thresholds) and `ordersctl purge`."""

from dataclasses import dataclass
from typing import Annotated, Any

import typer
from rich.table import Table

from ops import queue as queue_reader
from ops.display import age, jsonable
from ops.health import QUEUE_THRESHOLDS, Level, QueueThresholds, queue_report
from ops.queue_actions import purge
from ordersctl.render import JsonOption, WatchOption, add_row, console, print_json, show
from ordersctl.services import Services, run
from shop.jobs.keys import JobOutcome


@dataclass(frozen=True, slots=True)
class QueueReport:
    status: str
    # Each queue's stats with its "status" and the "breaches" of the thresholds.
    queues: list[dict[str, Any]]


def queue_command(
    queues: Annotated[
        list[str] | None, typer.Option("--queue", help="Queue name (repeat for several).")
    ] = None,
    warn_age: Annotated[
        float, typer.Option(help="Warn when the oldest due job waited this long (s).")
    ] = QUEUE_THRESHOLDS.warn_age_s,
    crit_age: Annotated[
        float, typer.Option(help="Critical at this oldest due age (s).")
    ] = QUEUE_THRESHOLDS.crit_age_s,
    warn_depth: Annotated[
        int, typer.Option(help="Warn at this many queued jobs.")
    ] = QUEUE_THRESHOLDS.warn_depth,
    crit_depth: Annotated[
        int, typer.Option(help="Critical at this many queued jobs.")
    ] = QUEUE_THRESHOLDS.crit_depth,
    warn_failed: Annotated[
        int | None, typer.Option(help="Warn at this many failed jobs in the last hour.")
    ] = QUEUE_THRESHOLDS.warn_failed,
    crit_failed: Annotated[
        int | None, typer.Option(help="Critical at this many failed jobs in the last hour.")
    ] = QUEUE_THRESHOLDS.crit_failed,
    as_json: JsonOption = False,
    watch: WatchOption = None,
) -> None:
    """Per queue: queued, deferred, in progress, oldest due age, last hour's outcomes, functions,
    and beside the queue the outbox relay feeds, the orders' work still waiting in the outbox.

    Exit code 0/1/2 for ok/warning/critical against the thresholds (3 if Redis cannot be read),
    so it can feed alerting.
    """
    thresholds = QueueThresholds(
        warn_age, crit_age, warn_depth, crit_depth, warn_failed, crit_failed
    )

    async def read(services: Services) -> QueueReport:
        report = await queue_report(
            services.pool, services.queue, services.settings, queues, thresholds
        )
        rows = [
            {
                **jsonable(queue.stats),
                "outbox_pending": queue.outbox_pending,
                "outbox_oldest_pending_age_s": queue.outbox_oldest_pending_age_s,
                "status": queue.level.label,
                "breaches": {name: level.label for name, level in queue.breaches.items()},
            }
            for queue in report.queues
        ]
        return QueueReport(report.level.label, rows)

    show(lambda: run(read), _render, as_json, watch, lambda report: Level[report.status.upper()])


def _render(report: QueueReport) -> None:
    table = Table(
        "queue", "queued", "deferred", "in progress", "oldest due", "outbox", "outbox oldest",
        "complete 1h", "failed 1h", "retried 1h", "status", title="Queues",
    )  # fmt: skip
    functions = Table(
        "queue", "function", "queued", "deferred", "in progress", "complete 1h",
        "failed 1h", "retried 1h", title="By function",
    )  # fmt: skip
    for row in report.queues:
        last_hour = row["last_hour"]
        add_row(
            table,
            row["queue"],
            str(row["queued"]),
            str(row["deferred"]),
            str(row["in_progress"]),
            age(row["oldest_due_age_s"]),
            "" if row["outbox_pending"] is None else str(row["outbox_pending"]),
            age(row["outbox_oldest_pending_age_s"]),
            str(last_hour.get(JobOutcome.COMPLETE, 0)),
            str(last_hour.get(JobOutcome.FAILED, 0)),
            str(last_hour.get(JobOutcome.RETRIED, 0)),
            row["status"] + "".join(f" ({name})" for name in row["breaches"]),
        )
        history = row["last_hour_by_function"]
        for name in sorted(set(row["functions"]) | set(history)):
            counts = row["functions"].get(name, {})
            outcomes = history.get(name, {})
            add_row(
                functions,
                row["queue"],
                name,
                str(counts.get(queue_reader.QUEUED, 0)),
                str(counts.get(queue_reader.DEFERRED, 0)),
                str(counts.get(queue_reader.IN_PROGRESS, 0)),
                str(outcomes.get(JobOutcome.COMPLETE, 0)),
                str(outcomes.get(JobOutcome.FAILED, 0)),
                str(outcomes.get(JobOutcome.RETRIED, 0)),
            )
    console.print(table)
    if functions.row_count:
        console.print(functions)


def purge_command(
    queue: Annotated[str, typer.Option("--queue", help="The queue to empty.")],
    yes: Annotated[bool, typer.Option("--yes", help="Really remove the jobs.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Remove every waiting (queued or deferred) job from a queue; running jobs finish."""

    async def count(services: Services) -> queue_reader.QueueStats:
        return await queue_reader.queue_stats(services.queue, queue)

    async def remove(services: Services) -> int:
        return await purge(services.queue, queue)

    if not yes:
        stats = run(count)
        waiting = stats.queued + stats.deferred
        if as_json:
            print_json({"queue": queue, "purged": 0, "would_purge": waiting})
        else:
            console.print(f"{waiting} waiting job(s) in {queue}; add --yes to remove them.")
        raise typer.Exit(1)
    removed = run(remove)
    if as_json:
        print_json({"queue": queue, "purged": removed})
    else:
        console.print(f"Purged {removed} job(s) from {queue}.")
