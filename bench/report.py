"""docs/performance.md and its charts, from one run's results."""

import importlib.metadata
import json
import os
import platform
import statistics
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import flash_sale_report, webhooks_report
from bench.options import Options
from bench.results import Results
from bench.stack import Stack, run_quiet

PACKAGES = (
    "fastapi",
    "starlette",
    "pydantic",
    "pydantic-core",
    "uvicorn",
    "uvloop",
    "httptools",
    "granian",
    "asyncpg",
    "psycopg",
    "redis",
    "hiredis",
    "arq",
)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def describe_machine(stack: Stack) -> list[tuple[str, str]]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as meminfo:
        mem_kb = int(meminfo.readline().split()[1])
    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return [
        ("CPU", f"{cpu}, {os.cpu_count()} cores"),
        ("RAM", f"{mem_kb / 2**20:.1f} GiB"),
        ("OS", f"{platform.system()} {platform.release()}"),
        ("Python", platform.python_version()),
        ("PostgreSQL", run_quiet([str(stack.postgres.bindir / "postgres"), "--version"])),
        ("Redis", run_quiet(["redis-server", "--version"]).split(" sha=")[0]),
        ("wrk", run_quiet(["wrk", "-v"]).splitlines()[0] if run_quiet(["wrk", "-v"]) else "?"),
        ("Packages", ", ".join(versions)),
    ]


class _Figures:
    def __init__(self, results: Results) -> None:
        self.results = results

    def rps(self, name: str) -> float:
        return median([r.rps for r in self.results.http.get(name, [])])

    def of(self, name: str, attribute: str) -> float:
        return median([getattr(r, attribute) for r in self.results.http.get(name, [])])

    def errors(self, name: str) -> int:
        return sum(r.errors for r in self.results.http.get(name, []))

    def ratio(self, name: str, to: str = "hello") -> float:
        return self.rps(name) / self.rps(to)

    def jobs(self, name: str) -> float:
        return median(self.results.jobs.get(name, []))


def _fmt(value: float, digits: int = 0) -> str:
    return "n/a" if value != value else f"{value:,.{digits}f}"


def _http_table(
    f: _Figures, names: Sequence[tuple[str, str]], ratio_to: str = "hello"
) -> list[str]:
    rows = [
        f"| scenario | req/s | ratio to `{ratio_to}` | p50 ms | p99 ms | errors | CPU server / "
        "postgres / redis / wrk (cores) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, title in names:
        if name not in f.results.http:
            continue
        cpu = " / ".join(
            _fmt(f.of(name, a), 2) for a in ("server_cpu", "postgres_cpu", "redis_cpu", "wrk_cpu")
        )
        rows.append(
            f"| {title} (`{name}`) | {_fmt(f.rps(name))} | {_fmt(f.ratio(name, ratio_to), 2)} | "
            f"{_fmt(f.of(name, 'p50_ms'), 2)} | {_fmt(f.of(name, 'p99_ms'), 2)} | "
            f"{f.errors(name)} | {cpu} |"
        )
    return rows


def print_medians(results: Results) -> None:
    """A partial run (`--only`): each scenario's medians, and CPU µs per request, on stdout."""
    hello = results.http.get("hello")
    hello_rps = median([r.rps for r in hello]) if hello else float("nan")
    for name, runs in results.http.items():
        rps = median([r.rps for r in runs])
        server_us = median([r.server_cpu / r.rps * 1e6 for r in runs if r.rps])
        postgres_us = median([r.postgres_cpu / r.rps * 1e6 for r in runs if r.rps])
        print(
            f"{name:28s} {rps:9,.0f} req/s  ratio {rps / hello_rps:5.2f}"
            f"  p50 {median([r.p50_ms for r in runs]):6.2f} ms"
            f"  p99 {median([r.p99_ms for r in runs]):7.2f} ms"
            f"  CPU/request server {server_us:5.0f} µs, postgres {postgres_us:5.0f} µs",
            flush=True,
        )
    for unit, figures in (("jobs/s", results.jobs), ("orders/s", results.orders_per_s)):
        for name, values in figures.items():
            print(f"{name:28s} {median(values):9,.0f} {unit}", flush=True)
    if "e2e_1w" in results.jobs and "noop_1w" in results.jobs:
        ratio = median(results.jobs["e2e_1w"]) / median(results.jobs["noop_1w"])
        print(f"{'e2e_1w / noop_1w':28s} {ratio:9.2f}", flush=True)
    if results.retention:
        print(
            json.dumps({k: v for k, v in results.retention.items() if k != "samples"}),
            flush=True,
        )
    if results.memory:
        print(json.dumps({k: v for k, v in results.memory.items() if k != "samples"}), flush=True)
        for s in results.memory["samples"]:
            print(
                f"  t {s['t_s']:6.1f} s  worker {s['worker_mb']:6.1f} MiB  api {s['api_mb']:6.1f}"
                f" MiB  backlog {s['backlog']}",
                flush=True,
            )
    if results.flash_sale:
        for line in flash_sale_report.goal_table(results.flash_sale):
            print(line, flush=True)
        for part, figures in results.flash_sale.items():
            if isinstance(figures, dict):
                figures = {k: v for k, v in figures.items() if k != "series"}
            print(f"{part}: {json.dumps(figures, default=str)}", flush=True)
        sale = results.flash_sale.get("sale", {})
        for s in sale.get("series", []):
            print(
                f"  t {s['t_s']:3d} s  accepted {s['accepted']:5d}  confirmed {s['confirmed']:5d}"
                f"  emailed {s['emailed']:5d}  backlog {s['backlog']:6d}"
                f"  reads hot {s['hot_reads']:6d}  other {s['other_reads']:6d}",
                flush=True,
            )
    for line in webhooks_report.table(results.webhooks):
        print(line, flush=True)
    for line in capacity_section(results.capacity):
        print(line, flush=True)


def _verdict(condition: bool, yes: str, no: str) -> str:
    return yes if condition else no


def write_report(
    out_dir: Path,
    stack: Stack,
    options: Options,
    results: Results,
    titles: dict[str, str],
    started: datetime,
    load_before: tuple[float, float, float],
) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    f = _Figures(results)
    charts = _charts(out_dir, f, titles)
    nan = float("nan")
    loads = [v for values in results.loads.values() for v in values]
    load_after = os.getloadavg()
    hello = f.rps("hello")
    lines: list[str] = [
        "# Performance",
        "",
        "Written by `make bench` (`python -m bench`), which starts the whole system on loopback, "
        "drives it with wrk and writes this page and its charts. Every figure below comes from "
        "the same run; HTTP figures are medians of "
        f"{options.rounds} rounds of {options.seconds:g} s per scenario at "
        "64 connections unless stated, with the scenarios interleaved within each round "
        "(a shuffled order per round), after one warm-up run each. Do not compare absolute "
        "numbers across machines: compare the ratios.",
        "",
        f"Run started {started:%Y-%m-%d %H:%M} UTC, finished "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
        + (" (**smoke mode**: figures are meaningless)" if options.smoke else "")
        + ".",
        "",
        "## The machine",
        "",
        "| what | value |",
        "| --- | --- |",
        *[f"| {k} | {v} |" for k, v in describe_machine(stack)],
        f"| load average (1/5/15 min) before | {' / '.join(f'{x:.2f}' for x in load_before)} |",
        f"| load average during the rounds (1 min) | min {_fmt(min(loads, default=nan), 2)}, "
        f"median {_fmt(median(loads), 2)}, max {_fmt(max(loads, default=nan), 2)} |",
        f"| load average (1/5/15 min) after | {' / '.join(f'{x:.2f}' for x in load_after)} |",
        "",
        "The machine is shared with other engineers' test runs; the load average shows how "
        "much. Postgres runs with `fsync=on` and `synchronous_commit=on`: every order is on disk "
        "before it is acknowledged. Servers run with the production settings below "
        "(`bench/stack.py`, `api/server.py`): Granian with uvloop, HTTP/1, no access log, "
        "keep-alive 5 s; uvicorn (uvloop, httptools) is measured beside it.",
        "",
    ]
    if results.notes:
        lines += ["## Problems in this run", "", *[f"- {note}" for note in results.notes], ""]
    lines += _targets(f, results)
    lines += [
        "## The API against the framework's ceiling",
        "",
        f"![throughput](./{charts['api'].name})",
        "",
        *_http_table(
            f,
            [
                (n, titles[n])
                for n in (
                    "hello",
                    "post_order",
                    "product_hit",
                    "product_miss",
                    "order_get",
                    "orders_page",
                )
            ],
        ),
        "",
        "`POST /v1/orders` writes two lines, the order and its outbox row in one statement, with "
        "a distinct body and `Idempotency-Key` per request. `product_miss` reads products "
        "nobody read before, so each is a Redis miss, a Postgres read and a cache fill.",
        "",
        "## Scaling and servers",
        "",
        *_http_table(
            f,
            [
                (n, titles[n])
                for n in (
                    "hello",
                    "hello_2p",
                    "post_order",
                    "post_order_2p",
                    "post_order_pool32",
                    "post_order_noconsole",
                    "product_hit",
                    "product_hit_2p",
                    "product_hit_noconsole",
                    "hello_uvicorn",
                    "post_order_uvicorn",
                    "product_hit_uvicorn",
                )
            ],
        ),
        "",
        *_scaling_text(f),
        "",
        "## Rate limit scope",
        "",
        *_http_table(
            f,
            [
                (n, titles[n])
                for n in ("product_hit_process_limit", "product_hit_cluster_limit")
                if n in titles
            ],
            ratio_to="product_hit_process_limit",
        ),
        "",
        "The cached read under one limit per key across API processes (Redis, one script call "
        "shared by the requests asking together) beside the default per-process limit: "
        f"{_fmt(f.ratio('product_hit_cluster_limit', 'product_hit_process_limit'), 2)}x its "
        "rate ([0035](decisions/0035-cluster-rate-limit.md)).",
        "",
        *_tracing_section(f, titles),
    ]
    lines += _queue_section(f, results, charts)
    lines += _claims_section(f, results, titles, charts)
    lines += _memory_section(results, charts)
    flash_sale_report.chart(out_dir, results.flash_sale)
    lines += flash_sale_report.section(results.flash_sale)
    lines += webhooks_report.section(results.webhooks)
    lines += capacity_section(results.capacity)
    lines += [
        "",
        "Why the system is built as it is, measured: [decision records](decisions/README.md).",
        "",
    ]
    report = out_dir / "performance.md"
    report.write_text("\n".join(lines) + "\n")
    raw = {"options": options.__dict__, "hello_rps": hello, **results.to_json()}
    (out_dir / "performance.json").write_text(json.dumps(raw, indent=1, default=str) + "\n")
    return report


def _targets(f: _Figures, results: Results) -> list[str]:
    e2e = f.jobs("e2e_1w") / f.jobs("noop_1w") if results.jobs else float("nan")
    memory = results.memory
    rows = [
        ("`POST /v1/orders` / hello world, durable commits", f.ratio("post_order"), 0.30, ">="),
        ("cached `GET /v1/products/{id}` / hello world", f.ratio("product_hit"), 0.85, ">="),
        ("end to end jobs/s / ARQ no-op jobs/s, one worker", e2e, 0.60, ">="),
        ("p99 of `POST /v1/orders` at 64 connections, ms", f.of("post_order", "p99_ms"), 50, "<"),
    ]
    if memory:
        for who in ("api", "worker"):
            growth = memory[f"{who}_end_mb"] / memory[f"{who}_warm_mb"] - 1
            rows.append(
                (f"RSS growth of the {who} over the soak, after warm-up, %", growth * 100, 5, "<")
            )
    lines = [
        "## Targets",
        "",
        "| target | measured | goal | met |",
        "| --- | ---: | ---: | --- |",
    ]
    for title, value, goal, op in rows:
        met = value >= goal if op == ">=" else value < goal
        lines.append(
            f"| {title} | {_fmt(value, 2)} | {op} {goal:g} | {'yes' if met else '**no**'} |"
        )
    if not memory:
        lines.append("| RSS over the soak | not run (`--soak-seconds 0`) | < 5 % growth | — |")
    return [*lines, ""]


def _scaling_text(f: _Figures) -> list[str]:
    return [
        f"A second Granian worker process gives hello world {_fmt(f.ratio('hello_2p'), 2)}x, "
        f"`POST /v1/orders` {_fmt(f.ratio('post_order_2p', 'post_order'), 2)}x and the cached "
        f"product read {_fmt(f.ratio('product_hit_2p', 'product_hit'), 2)}x the throughput of "
        f"one. A pool of 32 connections instead of the production 10 places "
        f"{_fmt(f.ratio('post_order_pool32', 'post_order'), 2)}x the orders. "
        "On two cores wrk itself needs a share of one core (see its CPU column), and "
        "Postgres and Redis run on the same two cores: the CPU columns show where the cycles "
        "go. Granian serves hello world at "
        f"{_fmt(f.ratio('hello', 'hello_uvicorn'), 2)}x uvicorn's rate, `POST /v1/orders` at "
        f"{_fmt(f.ratio('post_order', 'post_order_uvicorn'), 2)}x and the cached product read"
        f" at {_fmt(f.ratio('product_hit', 'product_hit_uvicorn'), 2)}x.",
        "",
        "The operator console's routes (docs/console.md) come after the API's, so that neither "
        "path reaches them: with the console mounted `POST /v1/orders` runs at "
        f"{_fmt(f.ratio('post_order', 'post_order_noconsole'), 2)}x and the cached product read "
        f"at {_fmt(f.ratio('product_hit', 'product_hit_noconsole'), 2)}x the rate of the same "
        "API with `CONSOLE_ENABLED=false`.",
    ]


def _tracing_section(f: _Figures, titles: dict[str, str]) -> list[str]:
    pairs = [("post_order", "post_order_traced"), ("product_hit", "product_hit_traced")]
    if not any(traced in f.results.http for _, traced in pairs):
        return []
    names = [(n, titles[n]) for pair in pairs for n in pair if n in titles]
    return [
        "## Tracing on and off",
        "",
        *_http_table(f, names),
        "",
        "The same API process, once without tracing (the default: nothing installed) and once "
        "exporting every span over OTLP/HTTP to a loopback receiver that keeps nothing "
        "(`bench/otlp_sink.py`), in the same interleaved rounds. With tracing on, "
        f"`POST /v1/orders` runs at {_fmt(f.ratio('post_order_traced', 'post_order'), 2)}x and "
        "the cached product read at "
        f"{_fmt(f.ratio('product_hit_traced', 'product_hit'), 2)}x the rate without "
        "([tracing](tracing.md)).",
        "",
    ]


def _queue_section(f: _Figures, results: Results, charts: dict[str, Path]) -> list[str]:
    if not results.jobs:
        return []
    e1, e2 = f.jobs("e2e_1w"), f.jobs("e2e_2w")
    n1, n2 = f.jobs("noop_1w"), f.jobs("noop_2w")
    o1 = median(results.orders_per_s.get("e2e_1w", []))
    o2 = median(results.orders_per_s.get("e2e_2w", []))
    bg = median(results.done_ms.get("background", []))
    q = median(results.done_ms.get("queue", []))
    crash_bg = results.crash.get("background", {})
    crash_q = results.crash.get("queue", {})
    return [
        "## End to end: accepted, confirmed, emailed",
        "",
        f"![queue](./{charts['queue'].name})",
        "",
        "A batch of orders is committed with their outbox rows (as the API does); the clock "
        "runs until the mail sink has received every confirmation. Each order is two jobs "
        "(`reserve_inventory`, `send_confirmation`) plus two outbox hand-overs. ARQ's ceiling is "
        "the same worker settings (`max_jobs`, `poll_delay`, `keep_result`) running jobs that "
        "do nothing, enqueued in the same run.",
        "",
        "| workers | orders/s | jobs/s | ARQ no-op jobs/s | ratio |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| 1 | {_fmt(o1)} | {_fmt(e1)} | {_fmt(n1)} | {_fmt(e1 / n1, 2)} |",
        f"| 2 | {_fmt(o2)} | {_fmt(e2)} | {_fmt(n2)} | {_fmt(e2 / n2, 2)} |",
        "",
        "## BackgroundTasks or a queue",
        "",
        "| | time from request to work done (median) | work accepted | lost when the "
        "process is killed |",
        "| --- | ---: | ---: | ---: |",
        f"| `BackgroundTasks` | {_fmt(bg, 1)} ms | {crash_bg.get('accepted', 'n/a')} | "
        f"{crash_bg.get('lost', 'n/a')} |",
        f"| ARQ job | {_fmt(q, 1)} ms | {crash_q.get('accepted', 'n/a')} | "
        f"{crash_q.get('lost', 'n/a')} (kept in Redis: {crash_q.get('kept_in_redis', 'n/a')}; "
        f"all done {_fmt(crash_q.get('all_done_after_restart_s') or float('nan'), 1)} s after a "
        "new worker started) |",
        "",
        "BackgroundTasks run in the API process right after the response; a SIGKILL (OOM "
        "killer, deploy without drain) loses every one still waiting. ARQ costs a Redis round "
        "trip and up to `poll_delay` of waiting, but a killed worker loses nothing: jobs stay "
        "in Redis and a jobs that was running is retried once its lock expires "
        "(`job_timeout` + 10 s). That is why the product puts anything that must happen on the "
        "outbox and the queue, and only cache warming on BackgroundTasks.",
        "",
    ]


def _claims_section(
    f: _Figures, results: Results, titles: dict[str, str], charts: dict[str, Path]
) -> list[str]:
    def table(names: Sequence[str], to: str) -> list[str]:
        return _http_table(f, [(n, titles[n]) for n in names], ratio_to=to)

    sync_async = f.rps("driver_async") / f.rps("driver_sync_in_async")
    sync_def = f.rps("driver_async") / f.rps("driver_sync_def")
    pool_gain_ms = f.of("conn_new_c1", "p50_ms") - f.of("conn_pool_c1", "p50_ms")
    pool_x = f.rps("conn_pool") / f.rps("conn_new")
    typed = f.rps("ser_typed") / f.rps("ser_star_dicts")
    fast_path = f.rps("ser_typed") / f.rps("ser_typed_response_class")
    body = f.rps("mw_none") / f.rps("mw_body_logging")
    http_timing = f.rps("mw_none") / f.rps("mw_http_timing")
    asgi = f.rps("mw_none") / f.rps("mw_asgi_timing")

    def per_request_us(name: str) -> float:
        return 1e6 / f.rps(name) - 1e6 / f.rps("mw_none")

    hit_x = f.rps("product_hit") / f.rps("product_miss")
    return [
        "## The guide's claims, measured",
        "",
        f"![claims](./{charts['claims'].name})",
        "",
        "Each claim runs in `bench/claims_app.py` (never in the product), served like the API.",
        "",
        "### Sync driver in `async def`, async driver, sync `def` in the threadpool",
        "",
        *table(["driver_async", "driver_sync_in_async", "driver_sync_def"], "driver_async"),
        "",
        f"The async driver serves {_fmt(sync_async, 1)}x the requests of a sync driver called "
        f"inside `async def`, and {_fmt(sync_def, 1)}x those of a sync `def` endpoint in the "
        "threadpool. "
        + _verdict(
            sync_async > 1.2,
            "The guide's claim holds: a blocking call in `async def` serialises every request "
            "behind one round trip at a time",
            "The claim is overstated here: on loopback a round trip is so short that blocking "
            "the loop costs little; over a real network (1 ms round trips) it costs far more",
        )
        + ". "
        + _verdict(
            sync_def > 1.2,
            "The threadpool 'fix' works but is clearly slower than the async driver (thread "
            "hand-offs, the GIL, a connection per thread).",
            "The threadpool is close to the async driver for single-query endpoints.",
        ),
        "",
        "### A new connection per request, or the pool",
        "",
        *table(["conn_pool", "conn_new", "conn_pool_c1", "conn_new_c1"], "conn_pool"),
        "",
        f"At one connection, a new Postgres connection per request adds {_fmt(pool_gain_ms, 1)} "
        f"ms to the median request (the guide says 5-20 ms; that is over a network with TLS "
        f"and password authentication; this is loopback with trust). Under load the pool "
        f"serves {_fmt(pool_x, 1)}x the requests: every new connection forks a Postgres "
        "backend, which costs CPU on the same two cores.",
        "",
        "### `SELECT *` as dicts, or explicit columns with a typed response",
        "",
        *table(["ser_typed", "ser_star_dicts", "ser_typed_response_class"], "ser_typed"),
        "",
        f"Three columns with a declared return type serve {_fmt(typed, 2)}x the requests of "
        "`SELECT *` returned as dicts (which also sends `sku`, `currency`, `stock` and two "
        "timestamps per row that nobody asked for). "
        + f"Setting `response_class=JSONResponse` on the typed endpoint costs "
        f"{_fmt((1 - 1 / fast_path) * 100 if fast_path == fast_path else float('nan'), 0)} % "
        "of its throughput: "
        + _verdict(
            fast_path > 1.05,
            "FastAPI's pydantic-core fast path (return type straight to JSON bytes) is off as "
            "soon as a response class is set, so the product declares return types and sets "
            "none on its hot paths.",
            "on these versions the difference is within noise.",
        ),
        "",
        "### Middleware",
        "",
        *table(["mw_none", "mw_asgi_timing", "mw_http_timing", "mw_body_logging"], "mw_none"),
        "",
        f"Per request, the guide's 'GOOD' timing middleware (`@app.middleware(\"http\")`, i.e. "
        f"`BaseHTTPMiddleware`) costs {_fmt(per_request_us('mw_http_timing'))} µs, its 'BAD' "
        f"body-logging one {_fmt(per_request_us('mw_body_logging'))} µs, and the product's pure "
        f"ASGI layer (timing, request id, slow-request log) "
        f"{_fmt(per_request_us('mw_asgi_timing'))} µs: throughput drops by "
        f"{_fmt((1 - 1 / http_timing) * 100)} %, {_fmt((1 - 1 / body) * 100)} % and "
        f"{_fmt((1 - 1 / asgi) * 100)} % against no middleware. "
        + _verdict(
            per_request_us("mw_http_timing") > 2 * max(per_request_us("mw_asgi_timing"), 1),
            "The guide's 'GOOD' example is itself the expensive kind: what costs is "
            '`@app.middleware("http")`, not what it does. A `BaseHTTPMiddleware` also runs the '
            "endpoint in another task, so contextvars set inside it do not reach the middleware.",
            "Here the BaseHTTPMiddleware overhead is smaller than the commonly quoted 4x.",
        ),
        "",
        "### Cached and uncached reads",
        "",
        f"A cached `GET /v1/products/{{id}}` serves {_fmt(hit_x, 2)}x the requests of a miss "
        "(Redis lookup, Postgres read, cache fill): see the API table above. The guide's "
        "`fastapi-cache2` example is not used: the package is unmaintained and pins redis < 5; "
        "its decorator has no invalidation, which the guide itself calls mistake 3.",
        "",
        "### One or several server processes",
        "",
        "See *Scaling and servers* above. The guide's `workers = 2 * cores + 1` with "
        "`uvicorn.workers.UvicornWorker` is out of date: that worker class is deprecated "
        "(`uvicorn --workers` or the `uvicorn-worker` package replace it), and on a machine "
        "where Postgres and Redis share the cores, one process per core is the most that helps.",
        "",
    ]


def _memory_section(results: Results, charts: dict[str, Path]) -> list[str]:
    memory = results.memory
    if not memory:
        return [
            "## Memory",
            "",
            "The soak was not run (`--soak-seconds 0`).",
            "",
        ]
    return [
        "## Memory over a soak",
        "",
        f"![memory](./{charts['memory'].name})",
        "",
        f"{memory['seconds']:g} s on one API process and one worker: orders placed at a fixed "
        f"{memory['order_rate_per_s']:g}/s, below what one worker confirms, so that it keeps up "
        f"({memory['orders_placed']} placed, {memory['order_errors']} errors, "
        f"{memory['orders_late']} not sent for lack of a free connection; orders placed but not "
        f"yet emailed: {memory['backlog_max']} at most, {memory['backlog_end']} at the end), and "
        f"reads on the rest of the API's capacity ({memory['requests']} requests, "
        f"{memory['errors']} errors). RSS after warm-up (the first fifth) and at the end:",
        "",
        "| process | after warm-up MiB | end MiB | growth |",
        "| --- | ---: | ---: | ---: |",
        *[
            f"| {who} | {memory[f'{who}_warm_mb']:.1f} | {memory[f'{who}_end_mb']:.1f} | "
            f"{(memory[f'{who}_end_mb'] / memory[f'{who}_warm_mb'] - 1) * 100:+.1f} % |"
            for who in ("api", "worker")
        ],
        "",
    ]


def _charts(out_dir: Path, f: _Figures, titles: dict[str, str]) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = {
        "api": out_dir / "perf-api.png",
        "claims": out_dir / "perf-claims.png",
        "queue": out_dir / "perf-queue.png",
        "memory": out_dir / "perf-memory.png",
    }

    def bars(path: Path, names: Sequence[str], title: str, ratio_to: str | None) -> None:
        present = [n for n in names if n in f.results.http]
        values = [f.rps(n) for n in present]
        fig, ax = plt.subplots(figsize=(9, 0.45 * len(present) + 1.2))
        ax.barh([titles[n] for n in present], values, color="#4c72b0")
        ax.invert_yaxis()
        for i, (n, v) in enumerate(zip(present, values, strict=True)):
            label = f" {v:,.0f}" + (f"  ({f.ratio(n, ratio_to):.2f}x)" if ratio_to else "")
            ax.text(v, i, label, va="center", fontsize=8)
        ax.set_xlabel("requests per second (median of rounds)")
        ax.set_title(title)
        ax.margins(x=0.25)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)

    bars(
        paths["api"],
        [
            "hello",
            "post_order",
            "product_hit",
            "product_miss",
            "order_get",
            "orders_page",
            "hello_2p",
            "post_order_2p",
            "product_hit_2p",
            "hello_uvicorn",
            "post_order_uvicorn",
            "product_hit_uvicorn",
        ],
        "The API against hello world (ratio to one-process hello world)",
        "hello",
    )
    bars(
        paths["claims"],
        [
            "driver_async",
            "driver_sync_in_async",
            "driver_sync_def",
            "conn_pool",
            "conn_new",
            "conn_pool_c1",
            "conn_new_c1",
            "ser_typed",
            "ser_star_dicts",
            "ser_typed_response_class",
            "mw_none",
            "mw_asgi_timing",
            "mw_http_timing",
            "mw_body_logging",
        ],
        "The guide's claims",
        None,
    )

    fig, ax = plt.subplots(figsize=(7, 3))
    labels = ["e2e, 1 worker", "ARQ no-op, 1 worker", "e2e, 2 workers", "ARQ no-op, 2 workers"]
    values = [f.jobs(n) for n in ("e2e_1w", "noop_1w", "e2e_2w", "noop_2w")]
    ax.barh(labels, values, color=["#4c72b0", "#aaaaaa", "#4c72b0", "#aaaaaa"])
    ax.invert_yaxis()
    for i, v in enumerate(values):
        ax.text(v, i, f" {v:,.0f}", va="center", fontsize=8)
    ax.set_xlabel("jobs per second (median of rounds)")
    ax.margins(x=0.2)
    fig.tight_layout()
    fig.savefig(paths["queue"], dpi=110)
    plt.close(fig)

    samples: list[dict[str, Any]] = f.results.memory.get("samples", [])
    fig, ax = plt.subplots(figsize=(7, 3))
    if samples:
        t = [s["t_s"] for s in samples]
        ax.plot(t, [s["api_mb"] for s in samples], label="API")
        ax.plot(t, [s["worker_mb"] for s in samples], label="worker")
        ax.set_ylim(bottom=0)
        ax.legend()
    else:
        ax.text(0.5, 0.5, "soak not run", ha="center", transform=ax.transAxes)
    ax.set_xlabel("seconds")
    ax.set_ylabel("RSS MiB")
    fig.tight_layout()
    fig.savefig(paths["memory"], dpi=110)
    plt.close(fig)
    return paths


_CAPACITY_ROWS = (
    ("api", "API CPU (Granian, 1 process), ms"),
    ("worker", "worker CPU (`arq worker.Settings`), ms"),
    ("postgres", "Postgres CPU, ms"),
    ("redis", "Redis CPU, ms"),
    ("smtp_sink", "smtp-sink CPU, ms"),
)


def capacity_section(figures: dict[str, Any]) -> list[str]:
    """What one order costs each part (bench.phases.capacity), the input of docs/capacity.md."""
    if not figures:
        return []
    cpu = figures["cpu_ms_per_order"]
    return [
        "## What one order costs",
        "",
        f"One API process, one worker and smtp-sink; wrk placed one-line orders over 100 "
        f"products for {figures['orders']['seconds']:.0f} s, {figures['emailed']:,} of them "
        f"went all the way to their email ({_fmt(figures['processed_per_s'])}/s). Each figure "
        "is the run's total (process CPU, Postgres's WAL position and commit count, Redis's "
        "command count) divided by those orders. docs/capacity.md scales them.",
        "",
        "| per order | measured |",
        "| --- | ---: |",
        *(f"| {title} | {cpu.get(key, float('nan')):.3f} |" for key, title in _CAPACITY_ROWS),
        f"| wrk CPU (the clients), ms | {figures['wrk_cpu_ms_per_order']:.3f} |",
        f"| Postgres WAL, bytes | {figures['wal_bytes_per_order']:,} |",
        f"| Postgres commits | {figures['commits_per_order']:.3f} |",
        f"| Redis commands | {figures['redis_commands_per_order']:.2f} |",
        "",
    ]
