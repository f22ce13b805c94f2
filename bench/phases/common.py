"""What every phase uses: progress lines, bounded waits, and a clean slate between phases."""

import asyncio
import time
from collections.abc import Awaitable, Callable

import asyncpg

from bench import repository as bench_repo
from bench.stack import Child, Stack


def say(message: str) -> None:
    print(f"bench: {message}", flush=True)


async def wait_until(predicate: Callable[[], Awaitable[bool]], limit_s: float, what: str) -> float:
    """Polls `predicate` until it holds; returns the monotonic time it did."""
    started = time.monotonic()
    while True:
        if await predicate():
            return time.monotonic()
        if time.monotonic() - started > limit_s:
            raise TimeoutError(f"{what} did not happen within {limit_s:g}s")
        await asyncio.sleep(0.005)


def wait_for_log(child: Child, marker: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while marker not in child.log_path.read_text(errors="replace"):
        child.check()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{child.name} did not log {marker!r} within {timeout:g}s")
        time.sleep(0.05)


def start_worker(stack: Stack, name: str, env: dict[str, str] | None = None) -> Child:
    """`arq worker.Settings`, once it has started its relay and can take jobs."""
    worker = stack.worker(name, "worker.Settings", env)
    wait_for_log(worker, "worker_started")
    return worker


async def settle(stack: Stack) -> None:
    """Orders placed so far (seeded, or by earlier phases) are not part of what follows."""
    conn = await asyncpg.connect(stack.postgres.url, timeout=10)
    try:
        await bench_repo.close_pending_orders(conn)
    finally:
        await conn.close()
