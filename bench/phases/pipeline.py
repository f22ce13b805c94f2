"""What the phases that run the whole pipeline share: their own API process, worker and
smtp-sink, wrk pointed at them, and the orders followed through the tables."""

import asyncio
import math
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from bench import load
from bench import repository as bench_repo
from bench.load import WrkRun
from bench.phases.common import start_worker
from bench.programs import ensure_smtp_sink, ensure_wrk
from bench.repository import OrderTimes
from bench.stack import (
    PRODUCTION_POOL,
    PRODUCTION_SERVER,
    Child,
    Server,
    Stack,
    tree_cpu_seconds,
    wait_for_port,
)
from devstack.services import LOOPBACK, free_port

T = TypeVar("T")


class PipelineStack:
    """A phase's own API process, worker and mail sink (smtp-sink), and wrk pointed at them."""

    def __init__(self, stack: Stack, name: str, api_env: dict[str, str] | None = None) -> None:
        self.stack = stack
        self.name = name
        self.wrk = ensure_wrk()
        self.scripts = stack.root / "lua"
        self.scripts.mkdir(exist_ok=True)
        self.sink, self.sink_url = start_sink(stack)
        self.api: Server = stack.server(
            f"api_{name}",
            PRODUCTION_SERVER,
            "api.main:app",
            1,
            {**PRODUCTION_POOL, **(api_env or {})},
        )
        self.worker: Child | None = None

    def start_worker(self, env: dict[str, str] | None = None) -> None:
        self.worker = start_worker(
            self.stack, f"worker_{self.name}", {"SMTP_URL": self.sink_url, **(env or {})}
        )

    def stop_worker(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.worker = None

    def pids(self) -> dict[str, int]:
        pids = {
            "api": self.api.pid,
            "postgres": self.stack.postgres.pid or 0,
            "redis": self.stack.redis.pid or 0,
            "smtp_sink": self.sink.pid,
        }
        if self.worker is not None:
            pids["worker"] = self.worker.pid
        return pids

    def cpu(self) -> dict[str, float]:
        return {name: tree_cpu_seconds(pid) for name, pid in self.pids().items()}

    def wrk_start(self, name: str, script: str, seconds: float, connections: int) -> WrkRun:
        path = self.scripts / f"{self.name}-{name}.lua"
        path.write_text(script)
        return load.start_wrk(
            self.wrk, self.api.url, path, seconds=seconds, connections=connections
        )


def start_sink(stack: Stack) -> tuple[Child, str]:
    """smtp-sink on a free port: accepts and drops every message (no -d: nothing on disk); -c
    keeps a running count in its log. It starts as root only to drop to nobody (-u)."""
    port = free_port()
    sink = stack.child(
        "smtp_sink", [ensure_smtp_sink(), "-c", "-u", "nobody", f"{LOOPBACK}:{port}", "1000"]
    )
    wait_for_port(port, sink)
    return sink, f"smtp://{LOOPBACK}:{port}"


def sink_count(sink: Child) -> int | None:
    counts = re.findall(r"mesg=(\d+)", sink.log_path.read_text(errors="replace"))
    return int(counts[-1]) if counts else None


async def fetch(dsn: str, query: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """`query` on a connection of its own, closed after."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return await query(conn)
    finally:
        await conn.close()


async def wait_while_any(
    dsn: str, count: Callable[[asyncpg.Connection], Awaitable[int]], limit_s: float, what: str
) -> float:
    """Waits until `count` is 0; returns the time (time.time()) it saw that, or raises
    TimeoutError naming `what`."""

    async def poll(conn: asyncpg.Connection) -> float:
        deadline = time.monotonic() + limit_s
        while await count(conn):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} after {limit_s:g}s")
            await asyncio.sleep(0.1)
        return time.time()

    return await fetch(dsn, poll)


async def drain(dsn: str, client_id: int, after_id: int, limit_s: float) -> float:
    """Waits until none of the client's orders after `after_id` is on its way."""
    return await wait_while_any(
        dsn,
        lambda conn: bench_repo.unfinished_orders(conn, client_id, after_id),
        limit_s,
        "orders were still on their way",
    )


async def last_order_id(dsn: str) -> int:
    return await fetch(dsn, bench_repo.last_order_id)


async def order_times(dsn: str, client_id: int, after_id: int) -> list[OrderTimes]:
    return await fetch(dsn, lambda conn: bench_repo.order_times(conn, client_id, after_id))


def per_second(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else math.nan


def percentile(values: list[float], p: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1)]


def wrk_figures(run: WrkRun) -> dict[str, Any]:
    return {
        "requests": run.requests,
        "seconds": round(run.seconds, 3),
        "rps": round(run.rps, 1),
        "errors": run.errors,
        "p50_ms": run.latency_ms(50),
        "p99_ms": run.latency_ms(99),
        "wrk_cpu_s": round(run.cpu_s, 2),
    }
