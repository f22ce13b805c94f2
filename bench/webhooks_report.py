"""The webhooks' section of docs/performance.md (bench.phases.webhooks)."""

import math
import statistics
from typing import Any


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:,.{digits}f}"


def table(figures: dict[str, Any]) -> list[str]:
    """The figures as Markdown tables: delivery rates, then the pipeline with and without."""
    if not figures:
        return []
    lines = [
        "| deliveries to a loopback receiver, one worker | delivered | per s | worker CPU ms "
        "per delivery | receiver CPU s |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for key, title in (
        ("many_endpoints", f"{figures['webhook_max_in_flight']} endpoints (the worker's cap)"),
        ("one_endpoint", "1 endpoint (its cap per endpoint)"),
    ):
        part = figures[key]
        lines.append(
            f"| {title} | {_fmt(part['delivered'])} | {_fmt(part['per_s'])} | "
            f"{_fmt(part['worker_cpu_ms_per_delivery'], 2)} | "
            f"{_fmt(part['cpu_s']['receiver'], 2)} |"
        )
    runs = figures["pipeline_runs"]
    lines += [
        "",
        "| orders through the pipeline | accepted/s | processed/s | worker CPU ms per order | "
        "deliveries |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for hooked in (False, True):
        mine = [r for r in runs if r["webhooks"] is hooked]
        lines.append(
            f"| {'one endpoint, every event' if hooked else 'no endpoint'} "
            f"(median of {len(mine)}) | "
            f"{_fmt(statistics.median(r['orders']['rps'] for r in mine))} | "
            f"{_fmt(statistics.median(r['processed_per_s'] for r in mine))} | "
            f"{_fmt(statistics.median(r['worker_cpu_ms_per_order'] for r in mine), 2)} | "
            f"{_fmt(statistics.median(r['delivered'] for r in mine))} |"
        )
    lines += [
        "",
        f"Processed/s with webhooks / without: {_fmt(figures['processed_with_vs_without'], 2)}.",
    ]
    return lines


def section(figures: dict[str, Any]) -> list[str]:
    if not figures:
        return ["## Webhooks", "", "The webhooks phase was not run.", ""]
    return [
        "## Webhooks: deliveries per worker, and their cost to the pipeline",
        "",
        "One API process, one worker and smtp-sink as in the flash sale, and a receiver on "
        "loopback that answers 204 at once (`bench/webhook_receiver.py`, its own process). "
        "First, with the worker idle, events are written with their outbox rows in one "
        "transaction, as the order path writes them, for as many endpoints as a worker "
        "delivers to at once (`WEBHOOK_MAX_IN_FLIGHT`) and then for one endpoint "
        "(`WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT`); the rate is from the first try to the last in "
        "`webhook_attempts`. Then orders are placed by wrk while the worker confirms and emails "
        "them, without an endpoint and with one endpoint taking every event type (two "
        "deliveries an order: `order.created`, `order.confirmed`), alternating, two runs each; "
        "processed/s counts an order when it is emailed and, with webhooks, when every "
        "delivery is delivered, from the first `POST` to the last of them. For those runs the "
        "worker may send the one endpoint as many requests at once as it sends in all, so that "
        "the figure is what delivering costs the worker rather than the per-endpoint cap.",
        "",
        *table(figures),
        "",
    ]
