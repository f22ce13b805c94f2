"""`ordersctl health`: Postgres, Redis, workers and outbox lag against the health thresholds."""

from typing import Annotated

import typer
from rich.table import Table

from ops.health import HEALTH_THRESHOLDS, HealthReport, HealthThresholds, Level, health
from ordersctl.render import JsonOption, WatchOption, add_row, console, show
from ordersctl.services import Services, run


def health_command(
    min_workers: Annotated[
        int, typer.Option(min=0, help="Fewer live workers is unhealthy.")
    ] = HEALTH_THRESHOLDS.min_workers,
    max_outbox_lag: Annotated[
        float, typer.Option(help="An older pending outbox row (s) is unhealthy.")
    ] = HEALTH_THRESHOLDS.max_outbox_lag_s,
    as_json: JsonOption = False,
    watch: WatchOption = None,
) -> None:
    """Postgres, Redis, live workers and outbox lag; exit code 2 when anything is unhealthy."""
    thresholds = HealthThresholds(min_workers, max_outbox_lag)

    async def read(services: Services) -> HealthReport:
        return await health(services.pool, services.queue, services.settings, thresholds)

    show(
        lambda: run(read),
        _render,
        as_json,
        watch,
        lambda report: Level.OK if report.healthy else Level.CRITICAL,
    )


def _render(report: HealthReport) -> None:
    table = Table(
        "check", "ok", "detail", title="Health: " + ("ok" if report.healthy else "UNHEALTHY")
    )
    for name, check in report.checks.items():
        add_row(table, name, "ok" if check.ok else "FAIL", check.detail)
    console.print(table)
