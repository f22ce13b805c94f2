"""The flash sale's section of docs/performance.md and its chart (bench.phases.flash_sale)."""

import math
from pathlib import Path
from typing import Any

CHART = "perf-flash-sale.png"
_PROCESSES = (
    ("api", "API (Granian, 1 process)"),
    ("worker", "worker (`arq worker.Settings`)"),
    ("postgres", "Postgres"),
    ("redis", "Redis"),
    ("smtp_sink", "smtp-sink"),
    ("wrk_orders", "wrk, orders"),
    ("wrk_hot_reads", "wrk, reads of the products on sale"),
    ("wrk_other_reads", "wrk, reads of the others"),
)


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:,.{digits}f}"


def goal_rows(figures: dict[str, Any]) -> list[tuple[str, float, float, str]]:
    """(what, measured, goal, '>=' or '<') for each of the issue's goals."""
    ratios, goals = figures.get("ratios", {}), figures.get("goals", {})
    sale = figures.get("sale", {})
    alone = figures.get("post_alone", {})
    open_loop = figures.get("open_loop", {})
    pg = figures.get("pgbench", {})
    row_clients = pg.get("row_transactions", {}).get("clients", "?")
    pg_clients = pg.get("lean_write", {}).get("clients", "?")
    nan = math.nan
    return [
        (
            "reads/s of the products on sale / reads/s of the others, during the sale",
            ratios.get("hot_reads_vs_other_reads", nan),
            goals.get("hot_reads_vs_other_reads", nan),
            ">=",
        ),
        (
            "orders confirmed and emailed/s / orders accepted/s, during the sale",
            ratios.get("emailed_vs_accepted", nan),
            goals.get("emailed_vs_accepted", nan),
            ">=",
        ),
        (
            f"orders accepted/s during the sale / `POST /v1/orders` alone "
            f"({_fmt(alone.get('rps'))}/s)",
            ratios.get("accepted_vs_post_alone", nan),
            goals.get("accepted_vs_post_alone", nan),
            ">=",
        ),
        (
            "p99 of `POST /v1/orders` during the sale, ms",
            sale.get("orders", {}).get("p99_ms", nan),
            goals.get("sale_order_p99_ms", nan),
            "<",
        ),
        (
            "one product on sale: confirmed/s, batched / the same worker with one transaction "
            "per order (`JOB_BATCH_SIZE=1`)",
            ratios.get("single_product_vs_one_per_transaction", nan),
            goals.get("single_product_vs_one_per_transaction", nan),
            ">=",
        ),
        (
            f"one product on sale: confirmed/s, batched / one transaction per order on its row "
            f"in SQL alone (pgbench, {row_clients} clients; a reference, no goal)",
            ratios.get("single_product_vs_row_transactions", nan),
            nan,
            ">=",
        ),
        (
            f"pgbench, {pg_clients} clients: the product's statements per order / a lean "
            "write of the same rows",
            ratios.get("product_statements_vs_lean_write", nan),
            goals.get("product_statements_vs_lean_write", nan),
            ">=",
        ),
        (
            f"open loop at {_fmt(open_loop.get('rate_per_s'))} orders/s: p99 from `POST` to "
            "`confirmation_sent_at`, ms",
            open_loop.get("p99_ms", nan),
            goals.get("open_loop_p99_ms", nan),
            "<",
        ),
    ]


def goal_table(figures: dict[str, Any]) -> list[str]:
    lines = ["| goal | measured | target | met |", "| --- | ---: | ---: | --- |"]
    for title, value, goal, op in goal_rows(figures):
        if math.isnan(goal):
            target, met = "—", "(a reference)"
        elif math.isnan(value):
            target, met = f"{op} {goal:g}", "—"
        else:
            met = "yes" if (value >= goal if op == ">=" else value < goal) else "**no**"
            target = f"{op} {goal:g}"
        lines.append(f"| {title} | {_fmt(value, 2)} | {target} | {met} |")
    return lines


def section(figures: dict[str, Any]) -> list[str]:
    if not figures:
        return ["## Flash sale", "", "The flash sale was not run.", ""]
    before, sale = figures["before"], figures["sale"]
    single, alone = figures["single_product"], figures["post_alone"]
    one_each = figures.get("single_product_one_per_transaction", {})
    open_loop = figures.get("open_loop", {})
    pg = figures["pgbench"]
    cpu_sale, cpu_all = sale["cpu_s_during_sale"], sale["cpu_s_sale_to_drained"]
    to_email = sale["accepted_to_emailed_ms"]
    orders_n = figures.get("order_connections", 32)
    lines = [
        "## Flash sale: orders and reads at once on the same products",
        "",
        f"![flash sale](./{CHART})",
        "",
        "One API process (the production Granian command), one worker (`arq worker.Settings`), "
        "Postgres with durable commits, Redis, and Postfix's `smtp-sink` as the mail server. "
        "50 products, 5 of them on sale with plenty of stock. Before the sale, reads only: "
        "24 connections read the 5, 24 read the other 45. During the sale, "
        f"for {sale['seconds']:.0f} s, three wrk processes at once: {orders_n} connections place "
        "one-line orders for the 5 (a fresh `Idempotency-Key` each), 24 read the 5, 24 read "
        "the other 45. Orders are followed in the `orders` table (`created_at`, `confirmed_at`, "
        "`confirmation_sent_at`) until the last one is emailed; reads per second are counted "
        "by wrk's `response()` per wall-clock second. One run of each, not rounds.",
        "",
        *goal_table(figures),
        "",
        "| figure | before the sale | during the sale |",
        "| --- | ---: | ---: |",
        f"| reads/s, the 5 products on sale | {_fmt(before['hot_reads']['rps'])} | "
        f"{_fmt(sale['hot_reads']['rps'])} |",
        f"| reads/s, the other 45 | {_fmt(before['other_reads']['rps'])} | "
        f"{_fmt(sale['other_reads']['rps'])} |",
        f"| p99 of a read of a product on sale, ms | {_fmt(before['hot_reads']['p99_ms'], 1)} | "
        f"{_fmt(sale['hot_reads']['p99_ms'], 1)} |",
        f"| orders accepted/s (p50 / p99 ms) | — | {_fmt(sale['accepted_per_s'])} "
        f"({_fmt(sale['orders']['p50_ms'], 1)} / {_fmt(sale['orders']['p99_ms'], 1)}) |",
        f"| orders confirmed and emailed/s, from the sale's start to the last email | — | "
        f"{_fmt(sale['emailed_per_s'])} |",
        f"| orders accepted / confirmed / emailed / rejected | — | {sale['accepted']} / "
        f"{sale['confirmed']} / {sale['emailed']} / {sale['rejected']} |",
        f"| last email after the sale ended, s | — | {_fmt(sale['last_email_after_end_s'], 1)} |",
        f"| accepted to emailed, p50 / p99 ms | — | {_fmt(to_email['p50'])} / "
        f"{_fmt(to_email['p99'])} |",
        f"| errors (orders, reads of the 5, of the others) | {before['hot_reads']['errors']}, "
        f"{before['other_reads']['errors']} | {sale['orders']['errors']}, "
        f"{sale['hot_reads']['errors']}, {sale['other_reads']['errors']} |",
        "",
        f"smtp-sink counted {_fmt(sale.get('sink_messages'))} messages in the whole phase. "
        "CPU seconds of each process, during the sale and from its start to the last email:",
        "",
        "| process | CPU s during the sale | CPU s to the last email |",
        "| --- | ---: | ---: |",
        *[
            f"| {title} | {_fmt(cpu_sale.get(key), 2)} | {_fmt(cpu_all.get(key), 2)} |"
            for key, title in _PROCESSES
        ],
        "",
        "### References",
        "",
        f"`POST /v1/orders` alone (no worker, no reads; {orders_n} connections, one-line orders "
        f"for the 5): {_fmt(alone['rps'])}/s, p99 {_fmt(alone['p99_ms'], 1)} ms.",
        "",
        f"One product on sale: {orders_n} connections order the same product for "
        f"{single['orders']['seconds']:.0f} s with no worker running; then one worker confirms "
        f"them: {single['accepted']} orders, {_fmt(single['confirmed_per_s'])} confirmed/s "
        "from its start to the last confirmation, against "
        f"{_fmt(one_each['confirmed_per_s'])}/s from the same worker with `JOB_BATCH_SIZE=1` "
        "(one job and one transaction per order), and "
        f"{_fmt(pg['row_transactions']['tps'])} transactions/s of one order each on one "
        "product row in SQL alone (pgbench: the row's stock taken and a confirmation row "
        "written, one commit per order).",
        "",
        "Postgres alone, pgbench with durable commits (`bench/pgbench.py`): the product's own "
        "statements per order, as `POST /v1/orders` with an `Idempotency-Key` runs them (read "
        "the key, prices and the order's id; then one statement writes the order, two lines, "
        "the outbox row and the key), against a lean write of the same rows (one statement, "
        "scratch tables without foreign keys and with a primary key as their only index).",
        "",
        "| script | clients | transactions/s | mean latency ms | Postgres CPU s |",
        "| --- | ---: | ---: | ---: | ---: |",
        *[
            f"| {title} | {pg[key]['clients']} | {_fmt(pg[key]['tps'])} | "
            f"{_fmt(pg[key]['latency_ms'], 2)} | {_fmt(pg[key]['postgres_cpu_s'], 1)} |"
            for key, title in (
                ("product_statements", "the product's statements (a)"),
                ("lean_write", "lean write (b)"),
                ("row_transactions", "one order per transaction on one row"),
            )
        ],
        "",
    ]
    if open_loop:
        lines += [
            f"Open loop: orders sent at a fixed {_fmt(open_loop['rate_per_s'])}/s (half the "
            f"sale's confirmed-and-emailed rate) for {open_loop['seconds']:g} s, whatever the "
            f"answers ({open_loop['placed']} placed, {open_loop['errors']} errors, "
            f"{open_loop['late']} not sent for lack of a free connection): from the `POST` to "
            f"`confirmation_sent_at`, p50 {_fmt(open_loop['p50_ms'])} ms, p99 "
            f"{_fmt(open_loop['p99_ms'])} ms, max {_fmt(open_loop['max_ms'])} ms.",
            "",
        ]
    return lines


def chart(out_dir: Path, figures: dict[str, Any]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = out_dir / CHART
    series: list[dict[str, Any]] = figures.get("sale", {}).get("series", [])
    fig, (orders_ax, reads_ax) = plt.subplots(2, 1, figsize=(8, 5.5), sharex=True)
    if series:
        t = [s["t_s"] for s in series]
        for key, label in (
            ("accepted", "accepted/s"),
            ("confirmed", "confirmed/s"),
            ("emailed", "emailed/s"),
        ):
            orders_ax.plot(t, [s[key] for s in series], label=label)
        backlog_ax = orders_ax.twinx()
        backlog_ax.fill_between(
            t, [s["backlog"] for s in series], color="#cccccc", alpha=0.5, label="backlog"
        )
        backlog_ax.set_ylabel("backlog (accepted - emailed)")
        backlog_ax.set_ylim(bottom=0)
        orders_ax.set_zorder(backlog_ax.get_zorder() + 1)
        orders_ax.patch.set_visible(False)
        orders_ax.legend(loc="upper right", fontsize=8)
        reads_ax.plot(t, [s["hot_reads"] for s in series], label="reads/s, the 5 on sale")
        reads_ax.plot(t, [s["other_reads"] for s in series], label="reads/s, the other 45")
        reads_ax.legend(loc="upper right", fontsize=8)
        sale_s = figures["sale"]["seconds"]
        for ax in (orders_ax, reads_ax):
            ax.axvspan(0, sale_s, color="#fde7c8", alpha=0.4, lw=0)
            ax.set_ylim(bottom=0)
    else:
        orders_ax.text(0.5, 0.5, "flash sale not run", ha="center", transform=orders_ax.transAxes)
    orders_ax.set_ylabel("orders per second")
    orders_ax.set_title("Flash sale (shaded: the sale), per wall-clock second")
    reads_ax.set_ylabel("reads per second")
    reads_ax.set_xlabel("seconds from the sale's start")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
