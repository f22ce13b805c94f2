"""ARQ's own ceiling: the product worker's settings, with jobs that do nothing.

`arq bench.noop_worker.Settings` runs it; BENCH_NOOP_QUEUE picks the queue, so that one and two
worker processes can be measured side by side on separate queues.
"""

import asyncio
import os
import time
from typing import Any

from arq import func

from worker.settings import WorkerSettings

NOOP = "noop"
MARK_DONE = "mark_done"


def done_key(token: str) -> str:
    return f"bench:done:{token}"


async def noop(ctx: dict[str, Any]) -> None:
    return None


async def mark_done(ctx: dict[str, Any], token: str, delay_s: float = 0.0) -> None:
    """The same work as the claims app's BackgroundTask: note when it ran."""
    if delay_s:
        await asyncio.sleep(delay_s)
    await ctx["redis"].set(done_key(token), repr(time.time()), ex=600)


QUEUE_NAME = os.environ.get("BENCH_NOOP_QUEUE", "bench:noop")

# arq reads a settings class's own __dict__ (a subclass would lose what it inherits), or a dict.
Settings: dict[str, Any] = {
    **{k: v for k, v in vars(WorkerSettings).items() if not k.startswith("_")},
    "functions": [func(noop, name=NOOP), func(mark_done, name=MARK_DONE)],
    "queue_name": QUEUE_NAME,
    "on_startup": None,
    "on_shutdown": None,
}
