"""An API worker process that dies outright is replaced, and the API keeps serving: Granian with
the shipped flags and uvicorn --workers alike."""

import os
import signal
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.app_fixtures import wait_for
from tests.processes import ApiProcess, Server, live_gauge_pids


@pytest.mark.slow
@pytest.mark.usefixtures("pg_service", "redis_service")
@pytest.mark.parametrize("server", Server)
async def test_an_api_worker_killed_outright_is_replaced(
    server: Server, spawn_api: Callable[..., ApiProcess], tmp_path: Path
) -> None:
    # The multiprocess directory tells which processes run the app: the workers, not the
    # server's supervising process.
    api = spawn_api("--workers", "2", server=server, PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    await api.wait_until_ready()

    async def workers_started(count: int) -> bool:
        return len(live_gauge_pids(tmp_path)) == count

    await wait_for(lambda: workers_started(2), timeout_s=15)
    killed = min(live_gauge_pids(tmp_path))
    os.kill(killed, signal.SIGKILL)
    # The replacement's lifespan has started once its pool is in the files; the killed worker
    # had no lifespan shutdown, so its own stay there too.
    await wait_for(lambda: workers_started(3), timeout_s=30)

    # New connections each, so the requests reach both workers.
    for _ in range(10):
        async with httpx.AsyncClient(base_url=api.url, timeout=5) as one_shot:
            assert (await one_shot.get("/healthz")).status_code == 200
    assert api.process is not None
    assert api.process.poll() is None
