"""`ordersctl`: the operator's view of the queue, jobs, outbox and workers.

Every command takes `--json`; read commands take `--watch SECONDS`. The reading and the re-driving
live in `ops/` and `shop/jobs/dead_jobs.py`; this module parses, calls, renders.
Exit codes of `queue` and `health` follow the Nagios convention: 0 ok, 1 warning, 2 critical,
3 unknown (a service could not be read).
"""

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, TypeVar

import asyncpg
import typer
from arq.connections import ArqRedis
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from kit.db import UNAVAILABLE_ERRORS, create_pool
from kit.errors import DomainError, NotFound
from kit.redis import REDIS_UNAVAILABLE_ERRORS, create_queue_client
from kit.settings import Settings, get_settings
from ops import queue as queue_inspect
from ops import views as operations
from ops.views import jsonable
from ordersctl import webhooks
from shop.clients import repository as clients_repo
from shop.clients.service import create_client
from shop.demo import seed_demo
from shop.jobs import dead_jobs as dead_letters

T = TypeVar("T")

app = typer.Typer(help="Operate the orders backend.", no_args_is_help=True)
clients_app = typer.Typer(help="API clients and their keys.", no_args_is_help=True)
app.add_typer(clients_app, name="clients")
app.add_typer(webhooks.app, name="webhooks")

console = Console()
err_console = Console(stderr=True)

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
_LEVEL_NAMES = {OK: "ok", WARNING: "warning", CRITICAL: "critical", UNKNOWN: "unknown"}

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
WatchOption = Annotated[
    float | None,
    typer.Option(
        "--watch", min=0.1, help="Show again every SECONDS until Ctrl-C.", metavar="SECONDS"
    ),
]


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    pool: asyncpg.Pool
    queue: ArqRedis


@asynccontextmanager
async def _services() -> AsyncIterator[Services]:
    settings = get_settings()
    # No connection is opened up front, so `health` can report a Postgres that is down.
    pool = await create_pool(
        settings.model_copy(update={"db_pool_min_size": 0, "db_pool_max_size": 2}),
        application_name="ordersctl",
    )
    queue = create_queue_client(settings)
    try:
        yield Services(settings, pool, queue)
    finally:
        await queue.aclose()
        await pool.close()


def _run(work: Callable[[Services], Awaitable[T]]) -> T:
    async def run() -> T:
        async with _services() as services:
            return await work(services)

    try:
        return asyncio.run(run())
    except DomainError as exc:
        err_console.print(f"error: {exc.detail}", highlight=False, markup=False)
        raise typer.Exit(1) from exc
    except (*UNAVAILABLE_ERRORS, *REDIS_UNAVAILABLE_ERRORS) as exc:
        err_console.print(
            f"error: a service is unavailable: {exc!r}", highlight=False, markup=False
        )
        raise typer.Exit(UNKNOWN) from exc


def _with_connection(work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    async def run() -> T:
        settings = get_settings()
        conn = await asyncpg.connect(
            settings.database_url.get_secret_value(), timeout=settings.db_connect_timeout_s
        )
        try:
            return await work(conn)
        finally:
            await conn.close()

    return asyncio.run(run())


def _print_json(data: Any, *, compact: bool = False) -> None:
    typer.echo(json.dumps(jsonable(data), indent=None if compact else 2, sort_keys=False))


def _show(
    fetch: Callable[[], T],
    render: Callable[[T], None],
    as_json: bool,
    watch: float | None,
    exit_code: Callable[[T], int] = lambda _: OK,
) -> None:
    """Fetches and renders once, or every `watch` seconds until Ctrl-C; exits with the last code.

    With `--json --watch`, each round is one JSON document on one line, ready for `jq`.
    """
    code = OK
    try:
        while True:
            data = fetch()
            code = exit_code(data)
            if as_json:
                _print_json(data, compact=watch is not None)
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


def _add_row(table: Table, *cells: str) -> None:
    """Adds a row of plain text: job data such as "[Errno 111]" is not rich markup."""
    table.add_row(*(escape(cell) for cell in cells))


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def _when(value: datetime | None) -> str:
    return "" if value is None else value.isoformat(timespec="seconds")


def _short(value: Any, width: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(jsonable(value))
    return text if len(text) <= width else text[: width - 1] + "…"


# queue


@dataclass(frozen=True, slots=True)
class QueueReport:
    status: str
    queues: list[dict[str, Any]]


def _grade(value: float | None, warn: float | None, crit: float | None) -> int:
    if value is None:
        return OK
    if crit is not None and value >= crit:
        return CRITICAL
    if warn is not None and value >= warn:
        return WARNING
    return OK


@app.command("queue")
def queue_command(
    queues: Annotated[
        list[str] | None, typer.Option("--queue", help="Queue name (repeat for several).")
    ] = None,
    warn_age: Annotated[
        float, typer.Option(help="Warn when the oldest due job waited this long (s).")
    ] = 60,
    crit_age: Annotated[float, typer.Option(help="Critical at this oldest due age (s).")] = 300,
    warn_depth: Annotated[int, typer.Option(help="Warn at this many queued jobs.")] = 1_000,
    crit_depth: Annotated[int, typer.Option(help="Critical at this many queued jobs.")] = 10_000,
    warn_failed: Annotated[
        int | None, typer.Option(help="Warn at this many failed jobs in the last hour.")
    ] = None,
    crit_failed: Annotated[
        int | None, typer.Option(help="Critical at this many failed jobs in the last hour.")
    ] = None,
    as_json: JsonOption = False,
    watch: WatchOption = None,
) -> None:
    """Per queue: queued, deferred, in progress, oldest due age, last hour's outcomes, functions.

    Exit code 0/1/2 for ok/warning/critical against the thresholds (3 if Redis cannot be read),
    so it can feed alerting.
    """

    async def read(services: Services) -> QueueReport:
        names = queues or [services.settings.queue_name]
        stats = [await queue_inspect.queue_stats(services.queue, name) for name in names]
        rows = []
        worst = OK
        for stat in stats:
            failed = stat.last_hour.get("failed", 0)
            checks = {
                "oldest_due_age": _grade(stat.oldest_due_age_s, warn_age, crit_age),
                "queued": _grade(stat.queued, warn_depth, crit_depth),
                "failed_last_hour": _grade(failed, warn_failed, crit_failed),
            }
            level = max(checks.values())
            worst = max(worst, level)
            rows.append(
                {
                    **jsonable(stat),
                    "status": _LEVEL_NAMES[level],
                    "breaches": {name: _LEVEL_NAMES[v] for name, v in checks.items() if v},
                }
            )
        return QueueReport(_LEVEL_NAMES[worst], rows)

    def render(report: QueueReport) -> None:
        table = Table(
            "queue", "queued", "deferred", "in progress", "oldest due", "complete 1h",
            "failed 1h", "retried 1h", "status", title="Queues",
        )  # fmt: skip
        functions = Table(
            "queue", "function", "queued", "deferred", "in progress", "complete 1h",
            "failed 1h", "retried 1h", title="By function",
        )  # fmt: skip
        for row in report.queues:
            last_hour = row["last_hour"]
            _add_row(
                table,
                row["queue"],
                str(row["queued"]),
                str(row["deferred"]),
                str(row["in_progress"]),
                _age(row["oldest_due_age_s"]),
                str(last_hour.get("complete", 0)),
                str(last_hour.get("failed", 0)),
                str(last_hour.get("retried", 0)),
                row["status"] + "".join(f" ({name})" for name in row["breaches"]),
            )
            history = row["last_hour_by_function"]
            for name in sorted(set(row["functions"]) | set(history)):
                counts = row["functions"].get(name, {})
                outcomes = history.get(name, {})
                _add_row(
                    functions,
                    row["queue"],
                    name,
                    str(counts.get(queue_inspect.QUEUED, 0)),
                    str(counts.get(queue_inspect.DEFERRED, 0)),
                    str(counts.get(queue_inspect.IN_PROGRESS, 0)),
                    str(outcomes.get("complete", 0)),
                    str(outcomes.get("failed", 0)),
                    str(outcomes.get("retried", 0)),
                )
        console.print(table)
        if functions.row_count:
            console.print(functions)

    _show(
        lambda: _run(read),
        render,
        as_json,
        watch,
        lambda report: {v: k for k, v in _LEVEL_NAMES.items()}[report.status],
    )


# jobs, job


def _jobs_table(jobs: list[queue_inspect.JobInfo], title: str = "Jobs") -> Table:
    table = Table("job id", "status", "function", "args", "tries", "when", "error", title=title)
    for job in jobs:
        when = job.finished_at or job.started_at or job.due_at or job.enqueued_at
        _add_row(
            table,
            job.job_id,
            job.status + (f" → {job.redriven_job_id}" if job.redriven_job_id else ""),
            job.function,
            _short(job.args, 30),
            "" if job.tries is None else str(job.tries),
            "" if when is None else f"{when:%m-%d %H:%M:%S}",
            _short(job.error or "", 50),
        )
    return table


@app.command("jobs")
def jobs_command(
    status: Annotated[
        str | None,
        typer.Option(help="queued, deferred, in-progress, complete, failed or dead (default: all)"),
    ] = None,
    function: Annotated[str | None, typer.Option(help="Only this job function.")] = None,
    search: Annotated[
        str | None, typer.Option(help="Case-insensitive text in the id, arguments or error.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    as_json: JsonOption = False,
    watch: WatchOption = None,
) -> None:
    """Jobs by status: the queue's, the finished ones ARQ keeps (24 h) and the dead-job ledger."""
    if status is not None and status not in queue_inspect.STATUSES:
        err_console.print(f"error: --status must be one of {', '.join(queue_inspect.STATUSES)}")
        raise typer.Exit(2)

    async def read(services: Services) -> list[queue_inspect.JobInfo]:
        return await operations.list_jobs(
            services.pool,
            services.queue,
            services.settings,
            status=status,
            function=function,
            search=search,
            limit=limit,
        )

    _show(lambda: _run(read), lambda jobs: console.print(_jobs_table(jobs)), as_json, watch)


@app.command("job")
def job_command(
    job_id: Annotated[str, typer.Argument(help="The ARQ job id")],
    as_json: JsonOption = False,
    watch: WatchOption = None,
) -> None:
    """One job: function, arguments (personal data redacted), tries, timings, result or
    traceback, its order, and every time it went to the dead-job ledger."""

    async def read(services: Services) -> operations.JobDetail:
        detail = await operations.job_detail(
            services.pool, services.queue, services.settings, job_id
        )
        if detail is None:
            raise NotFound(f"There is no job {job_id} (or it was forgotten).")
        return detail

    def render(detail: operations.JobDetail) -> None:
        job = detail.job or detail.ledger[0]
        table = Table(show_header=False, title=escape(f"Job {detail.job_id}"))
        table.add_column(style="bold")
        table.add_column()
        _add_row(table, "status", job.status)
        _add_row(table, "function", job.function)
        _add_row(table, "args", _short(job.args, 200))
        _add_row(table, "kwargs", _short(job.kwargs, 200))
        _add_row(table, "tries", "" if job.tries is None else str(job.tries))
        _add_row(
            table,
            "order",
            ""
            if job.order_id is None
            else f"{job.order_id} ({detail.order_status or 'no such order'})",
        )
        for name in ("enqueued_at", "due_at", "started_at", "finished_at"):
            _add_row(table, name.replace("_", " "), _when(getattr(job, name)))
        if job.started_at and job.finished_at:
            duration = (job.finished_at - job.started_at).total_seconds()
            _add_row(table, "ran for", f"{duration:.3f}s")
        if job.status == queue_inspect.COMPLETE:
            _add_row(table, "result", _short(job.result, 200))
        if job.error:
            _add_row(table, "error", job.error)
        console.print(table)
        for dead in detail.ledger:
            redriven = f", re-driven as {dead.redriven_job_id}" if dead.redriven_job_id else ""
            console.print(
                f"[bold]dead[/bold] #{dead.dead_id} at {_when(dead.finished_at)} after "
                f"{dead.tries} tries{escape(redriven)}: {escape(dead.error or '')}",
                highlight=False,
            )
            if dead.traceback:
                console.print(dead.traceback, highlight=False, markup=False)

    _show(lambda: _run(read), render, as_json, watch)


# retry, abort, purge


@app.command("retry")
def retry_command(
    job_id: Annotated[str | None, typer.Argument(help="A dead or failed job's id")] = None,
    dead: Annotated[
        bool, typer.Option("--dead", help="Re-drive every dead job not yet re-driven.")
    ] = False,
    function: Annotated[str | None, typer.Option(help="With --dead: only this function.")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="With --dead: list, do not re-drive.")
    ] = False,
    limit: Annotated[int, typer.Option(min=1, help="With --dead: at most this many.")] = 1000,
    as_json: JsonOption = False,
) -> None:
    """Re-drive a dead or failed job under a new job id; its ledger row is marked re-driven.

    The jobs are idempotent, so re-driving work that did happen changes nothing.
    """
    if (job_id is None) == (not dead):
        err_console.print("error: give a job id, or --dead (not both)")
        raise typer.Exit(2)

    async def one(services: Services) -> list[dead_letters.Redrive]:
        assert job_id is not None
        return [
            await dead_letters.retry_job(services.pool, services.settings, services.queue, job_id)
        ]

    async def many(services: Services) -> list[dead_letters.Redrive]:
        return await dead_letters.retry_dead(
            services.pool,
            services.settings,
            services.queue,
            function=function,
            dry_run=dry_run,
            limit=limit,
        )

    done = _run(one if job_id is not None else many)
    if as_json:
        _print_json({"dry_run": dry_run, "redriven": done})
    else:
        table = Table("dead id", "job id", "function", "new job id", title="Re-driven")
        for item in done:
            new = item.new_job_id or ("(dry run)" if dry_run else f"not re-driven: {item.error}")
            _add_row(table, str(item.dead_id), item.job_id, item.function, new)
        console.print(table)
        verb = "would re-drive" if dry_run else "re-drove"
        console.print(f"{verb} {sum(1 for i in done if i.error is None)} job(s)")
    raise typer.Exit(1 if any(item.error for item in done) else 0)


@app.command("abort")
def abort_command(
    job_id: Annotated[str, typer.Argument(help="A queued, deferred or running job's id")],
    as_json: JsonOption = False,
) -> None:
    """Abort a job: a running one is cancelled by its worker, a waiting one never starts."""

    async def run(services: Services) -> str:
        return await queue_inspect.abort(services.queue, services.settings.queue_name, job_id)

    was = _run(run)
    if as_json:
        _print_json({"job_id": job_id, "was": was, "abort_requested": True})
    else:
        console.print(f"Abort requested for {job_id} (was {was}).", highlight=False, markup=False)


@app.command("purge")
def purge_command(
    queue: Annotated[str, typer.Option("--queue", help="The queue to empty.")],
    yes: Annotated[bool, typer.Option("--yes", help="Really remove the jobs.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Remove every waiting (queued or deferred) job from a queue; running jobs finish."""

    async def count(services: Services) -> queue_inspect.QueueStats:
        return await queue_inspect.queue_stats(services.queue, queue)

    async def remove(services: Services) -> int:
        return await queue_inspect.purge(services.queue, queue)

    if not yes:
        stats = _run(count)
        waiting = stats.queued + stats.deferred
        if as_json:
            _print_json({"queue": queue, "purged": 0, "would_purge": waiting})
        else:
            console.print(f"{waiting} waiting job(s) in {queue}; add --yes to remove them.")
        raise typer.Exit(1)
    removed = _run(remove)
    if as_json:
        _print_json({"queue": queue, "purged": removed})
    else:
        console.print(f"Purged {removed} job(s) from {queue}.")


# workers, outbox, order, health


def _workers_table(workers: list[queue_inspect.WorkerInfo]) -> Table:
    table = Table(
        "worker", "pid", "started", "last heartbeat", "running", "done", "failed", "retried",
        title=f"Workers ({len(workers)} live)",
    )  # fmt: skip
    for worker in workers:
        _add_row(
            table,
            worker.worker_id,
            str(worker.pid),
            _when(worker.started_at),
            f"{_age(worker.heartbeat_age_s)} ago",
            str(worker.running),
            str(worker.done),
            str(worker.failed),
            str(worker.retried),
        )
    return table


@app.command("workers")
def workers_command(as_json: JsonOption = False, watch: WatchOption = None) -> None:
    """Each live worker: last heartbeat, jobs running, done, failed and retried."""

    async def read(services: Services) -> list[queue_inspect.WorkerInfo]:
        return await queue_inspect.live_workers(services.queue, services.settings.queue_name)

    _show(
        lambda: _run(read), lambda workers: console.print(_workers_table(workers)), as_json, watch
    )


def _outbox_table(stats: Any) -> Table:
    table = Table(
        "pending", "failing", "oldest pending", "delivered 5m", "delivered 1h", "rate /min",
        "last error", title="Outbox",
    )  # fmt: skip
    _add_row(
        table,
        str(stats.pending),
        str(stats.failing),
        _age(stats.oldest_pending_age_s),
        str(stats.delivered_last_5m),
        str(stats.delivered_last_1h),
        f"{stats.delivered_last_5m / 5:.1f}",
        _short(stats.last_error or "", 40),
    )
    return table


@app.command("outbox")
def outbox_command(as_json: JsonOption = False, watch: WatchOption = None) -> None:
    """Pending rows, the oldest pending row's age, and the delivery rate."""

    async def read(services: Services) -> Any:
        return await operations.outbox_status(services.pool, services.settings)

    _show(lambda: _run(read), lambda stats: console.print(_outbox_table(stats)), as_json, watch)


@app.command("order")
def order_command(
    order_id: Annotated[int, typer.Argument(help="The order's id")],
    as_json: JsonOption = False,
    watch: WatchOption = None,
) -> None:
    """An order's timeline: state changes, its jobs and their outcomes, the email sent."""

    async def read(services: Services) -> operations.OrderTimeline:
        timeline = await operations.order_timeline(
            services.pool, services.queue, services.settings, order_id
        )
        if timeline is None:
            raise NotFound(f"There is no order {order_id}.")
        return timeline

    def render(timeline: operations.OrderTimeline) -> None:
        table = Table(
            "at",
            "event",
            "detail",
            title=f"Order {timeline.order_id}: {timeline.status}"
            f" (request {timeline.request_id or '-'})",
        )
        for event in timeline.events:
            _add_row(table, event.at.isoformat(timespec="milliseconds"), event.event, event.detail)
        console.print(table)

    _show(lambda: _run(read), render, as_json, watch)


@app.command("health")
def health_command(
    min_workers: Annotated[int, typer.Option(min=0, help="Fewer live workers is unhealthy.")] = 1,
    max_outbox_lag: Annotated[
        float, typer.Option(help="An older pending outbox row (s) is unhealthy.")
    ] = 60.0,
    as_json: JsonOption = False,
    watch: WatchOption = None,
) -> None:
    """Postgres, Redis, live workers and outbox lag; exit code 2 when anything is unhealthy."""

    async def read(services: Services) -> operations.HealthReport:
        return await operations.health(
            services.pool,
            services.queue,
            services.settings,
            min_workers=min_workers,
            max_outbox_lag_s=max_outbox_lag,
        )

    def render(report: operations.HealthReport) -> None:
        table = Table(
            "check", "ok", "detail", title="Health: " + ("ok" if report.healthy else "UNHEALTHY")
        )
        for name, check in report.checks.items():
            _add_row(table, name, "ok" if check.ok else "FAIL", check.detail)
        console.print(table)

    _show(
        lambda: _run(read),
        render,
        as_json,
        watch,
        lambda report: OK if report.healthy else CRITICAL,
    )


# top


@dataclass(frozen=True, slots=True)
class Overview:
    queue: queue_inspect.QueueStats
    workers: list[queue_inspect.WorkerInfo]
    outbox: Any
    failures: list[queue_inspect.JobInfo]


@app.command("top")
def top_command(
    interval: Annotated[float, typer.Option(min=0.1, help="Seconds between refreshes.")] = 2.0,
    iterations: Annotated[
        int | None, typer.Option(min=1, help="Stop after this many refreshes (default: Ctrl-C).")
    ] = None,
) -> None:
    """A live full-screen view: queue, workers, outbox and the latest failures."""

    async def read(services: Services) -> Overview:
        settings = services.settings
        return Overview(
            queue=await queue_inspect.queue_stats(services.queue, settings.queue_name),
            workers=await queue_inspect.live_workers(services.queue, settings.queue_name),
            outbox=await operations.outbox_status(services.pool, settings),
            failures=await operations.list_jobs(
                services.pool, services.queue, settings, status=queue_inspect.DEAD, limit=5
            ),
        )

    def view(overview: Overview) -> Group:
        stats = overview.queue
        queue = Table(
            "queue", "queued", "deferred", "in progress", "oldest due", "complete 1h",
            "failed 1h", title=f"ordersctl top · {datetime.now().astimezone():%H:%M:%S}",
        )  # fmt: skip
        _add_row(
            queue,
            stats.queue,
            str(stats.queued),
            str(stats.deferred),
            str(stats.in_progress),
            _age(stats.oldest_due_age_s),
            str(stats.last_hour.get("complete", 0)),
            str(stats.last_hour.get("failed", 0)),
        )
        return Group(
            queue,
            _workers_table(overview.workers),
            _outbox_table(overview.outbox),
            _jobs_table(overview.failures, title="Latest dead jobs"),
        )

    count = 0
    try:
        with Live(console=console, screen=console.is_terminal, auto_refresh=False) as live:
            while True:
                live.update(view(_run(read)), refresh=True)
                count += 1
                if iterations is not None and count >= iterations:
                    break
                time.sleep(interval)
    except KeyboardInterrupt:
        pass


# clients, demo-seed


def _client_json(row: clients_repo.ClientRow) -> dict[str, Any]:
    """A client without its key hash, which never leaves the database."""
    return {
        "id": row.id,
        "name": row.name,
        "key_prefix": row.key_prefix,
        "is_admin": row.is_admin,
        "created_at": row.created_at,
        "revoked_at": row.revoked_at,
    }


@clients_app.command("create")
def clients_create(
    name: Annotated[str, typer.Argument(help="Who the key is for")],
    admin: Annotated[bool, typer.Option("--admin", help="May manage the catalogue")] = False,
    as_json: JsonOption = False,
) -> None:
    """Create a client; its API key is printed once, alone on the last line."""
    new = _with_connection(lambda conn: create_client(conn, name, is_admin=admin))
    if as_json:
        _print_json({**_client_json(new.client), "api_key": new.api_key})
        return
    console.print(
        f"Created client {new.client.id} ({new.client.name}"
        f"{', admin' if new.client.is_admin else ''}). Store the key now: it is not kept.",
        highlight=False,
    )
    typer.echo(new.api_key)


@clients_app.command("list")
def clients_list(as_json: JsonOption = False) -> None:
    """Every client with its key prefix and whether it is revoked."""
    rows = _with_connection(clients_repo.list_all)
    if as_json:
        _print_json([_client_json(row) for row in rows])
        return
    table = Table("id", "name", "key prefix", "admin", "created", "revoked")
    for row in rows:
        _add_row(
            table,
            str(row.id),
            row.name,
            row.key_prefix + "…",
            "yes" if row.is_admin else "",
            row.created_at.isoformat(timespec="seconds"),
            row.revoked_at.isoformat(timespec="seconds") if row.revoked_at else "",
        )
    console.print(table)


@clients_app.command("revoke")
def clients_revoke(
    client_id: Annotated[int, typer.Argument(help="The client's id")],
    as_json: JsonOption = False,
) -> None:
    """Revoke a client's key (API processes stop accepting it within AUTH_CACHE_TTL_S)."""
    revoked = _with_connection(lambda conn: clients_repo.revoke(conn, client_id))
    if as_json:
        _print_json({"client_id": client_id, "revoked": revoked})
    elif revoked:
        console.print(f"Revoked client {client_id}.")
    else:
        console.print(f"No active client {client_id}.")
    if not revoked:
        raise typer.Exit(1)


@app.command("demo-seed")
def demo_seed() -> None:
    """Load the demo catalogue and print a fresh demo (admin) API key on the last line."""
    new = _with_connection(seed_demo)
    console.print(f"Demo catalogue loaded; demo client {new.client.id} has a new key.")
    typer.echo(new.api_key)
