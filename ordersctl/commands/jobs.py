"""`ordersctl jobs`, `job`, `retry` and `abort`: jobs in every state, and what to do with one."""

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from kit.errors import NotFound
from ops import queue as queue_reader
from ops.display import short, when
from ops.jobs import JobDetail, job_detail, list_jobs
from ops.queue import JobInfo
from ops.queue_actions import RetryOutcome, abort, retry_dead, retry_job
from ordersctl.render import (
    JsonOption,
    WatchOption,
    add_row,
    console,
    err_console,
    jobs_table,
    print_json,
    show,
)
from ordersctl.services import Services, run


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
    if status is not None and status not in queue_reader.STATUSES:
        err_console.print(f"error: --status must be one of {', '.join(queue_reader.STATUSES)}")
        raise typer.Exit(2)

    async def read(services: Services) -> list[JobInfo]:
        return await list_jobs(
            services.pool,
            services.queue,
            services.settings,
            status=status,
            function=function,
            search=search,
            limit=limit,
        )

    show(lambda: run(read), lambda jobs: console.print(jobs_table(jobs)), as_json, watch)


def job_command(
    job_id: Annotated[str, typer.Argument(help="The ARQ job id")],
    as_json: JsonOption = False,
    watch: WatchOption = None,
) -> None:
    """One job: function, arguments (personal data redacted), tries, timings, result or
    traceback, its order, and every time it went to the dead-job ledger."""

    async def read(services: Services) -> JobDetail:
        detail = await job_detail(services.pool, services.queue, services.settings, job_id)
        if detail is None:
            raise NotFound(f"There is no job {job_id} (or it was forgotten).")
        return detail

    show(lambda: run(read), _render_detail, as_json, watch)


def _render_detail(detail: JobDetail) -> None:
    job = detail.job or detail.ledger[0]
    table = Table(show_header=False, title=escape(f"Job {detail.job_id}"))
    table.add_column(style="bold")
    table.add_column()
    add_row(table, "status", job.status)
    add_row(table, "function", job.function)
    add_row(table, "args", short(job.args, 200))
    add_row(table, "kwargs", short(job.kwargs, 200))
    add_row(table, "tries", "" if job.tries is None else str(job.tries))
    add_row(
        table,
        "order",
        ""
        if job.order_id is None
        else f"{job.order_id} ({detail.order_status or 'no such order'})",
    )
    for name in ("enqueued_at", "due_at", "started_at", "finished_at"):
        add_row(table, name.replace("_", " "), when(getattr(job, name)))
    if job.started_at and job.finished_at:
        duration = (job.finished_at - job.started_at).total_seconds()
        add_row(table, "ran for", f"{duration:.3f}s")
    if job.status == queue_reader.COMPLETE:
        add_row(table, "result", short(job.result, 200))
    if job.error:
        add_row(table, "error", job.error)
    console.print(table)
    for dead in detail.ledger:
        retried = f", re-driven as {dead.redriven_job_id}" if dead.redriven_job_id else ""
        console.print(
            f"[bold]dead[/bold] #{dead.dead_id} at {when(dead.finished_at)} after "
            f"{dead.tries} tries{escape(retried)}: {escape(dead.error or '')}",
            highlight=False,
        )
        if dead.traceback:
            console.print(dead.traceback, highlight=False, markup=False)


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

    async def one(services: Services) -> list[RetryOutcome]:
        assert job_id is not None
        return [await retry_job(services.pool, services.settings, services.queue, job_id)]

    async def many(services: Services) -> list[RetryOutcome]:
        return await retry_dead(
            services.pool,
            services.settings,
            services.queue,
            function=function,
            dry_run=dry_run,
            limit=limit,
        )

    done = run(one if job_id is not None else many)
    if as_json:
        # "redriven" (and "ledger" in `job --json`): keys that scripts read, kept as they were.
        print_json({"dry_run": dry_run, "redriven": done})
    else:
        table = Table("dead id", "job id", "function", "new job id", title="Re-driven")
        for item in done:
            new = item.new_job_id or ("(dry run)" if dry_run else f"not re-driven: {item.error}")
            add_row(table, str(item.dead_id), item.job_id, item.function, new)
        console.print(table)
        verb = "would re-drive" if dry_run else "re-drove"
        console.print(f"{verb} {sum(1 for i in done if i.error is None)} job(s)")
    raise typer.Exit(1 if any(item.error for item in done) else 0)


def abort_command(
    job_id: Annotated[str, typer.Argument(help="A queued, deferred or running job's id")],
    as_json: JsonOption = False,
) -> None:
    """Abort a job: a running one is cancelled by its worker, a waiting one never starts."""

    async def request(services: Services) -> str:
        return await abort(services.queue, services.settings.queue_name, job_id)

    was = run(request)
    if as_json:
        print_json({"job_id": job_id, "was": was, "abort_requested": True})
    else:
        console.print(f"Abort requested for {job_id} (was {was}).", highlight=False, markup=False)
