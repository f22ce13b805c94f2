"""A job claim whose Redis connection is lost midway: the worker carries on, the job runs once.

The worker reaches Redis through a TCP proxy on loopback that drops the connection the moment
a chosen command of a claim passes through it, before Redis sees the command: after the WATCH
(what a failover or a partition does there), or at the transaction that marks the job in
progress.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import arq.worker
import pytest
from arq import func
from arq.connections import ArqRedis

from devstack.services import LOOPBACK, free_port
from kit.settings import Settings
from worker.arq_worker import ClaimSafeWorker
from worker.settings import WorkerSettings, queue_redis_settings


class CuttingProxy:
    """Forwards connections to Redis; closes the first one that sends `cut_at`, unsent."""

    def __init__(self, target_port: int, cut_at: bytes) -> None:
        self.target_port = target_port
        self.cut_at = cut_at
        self.port = free_port()
        self.cuts = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, LOOPBACK, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        server_in, server_out = await asyncio.open_connection(LOOPBACK, self.target_port)

        async def to_server() -> None:
            while data := await client_in.read(65536):
                if self.cuts == 0 and self.cut_at in data:
                    self.cuts += 1
                    return
                server_out.write(data)
                await server_out.drain()

        async def to_client() -> None:
            while data := await server_in.read(65536):
                client_out.write(data)
                await client_out.drain()

        forwarding = [asyncio.create_task(to_server()), asyncio.create_task(to_client())]
        await asyncio.wait(forwarding, return_when=asyncio.FIRST_COMPLETED)
        for task in forwarding:
            task.cancel()
        # A side the other closed ends with a ConnectionError: either way, the connection is over.
        await asyncio.gather(*forwarding, return_exceptions=True)
        for writer in (client_out, server_out):
            writer.close()


@contextlib.asynccontextmanager
async def proxy_cutting_at(settings: Settings, command: bytes) -> AsyncIterator[CuttingProxy]:
    redis_port = queue_redis_settings(settings).port
    proxy = CuttingProxy(redis_port, command)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


async def record_run(ctx: dict[str, Any]) -> None:
    ctx["runs"].append(ctx["job_id"])


def worker_through(proxy: CuttingProxy, settings: Settings, runs: list[str]) -> ClaimSafeWorker:
    redis_settings = queue_redis_settings(settings)
    redis_settings.host, redis_settings.port = LOOPBACK, proxy.port
    return ClaimSafeWorker(
        functions=[func(record_run, name="record_run")],
        queue_name=settings.queue_name,
        redis_settings=redis_settings,
        burst=True,
        poll_delay=0.05,
        handle_signals=False,
        # One slot: a claim that kept the slot it took would leave none for the next job.
        max_jobs=1,
        ctx={"runs": runs},
    )


# The command's name as the proxy sees it, in RESP: after the WATCH, a claim reads the job's
# in-progress key (EXISTS) and its score (ZSCORE); then sends MULTI, PSETEX and EXEC at once.
@pytest.mark.parametrize("command", [b"EXISTS", b"ZSCORE", b"EXEC"])
async def test_a_claim_cut_off_midway_leaves_its_job_for_the_next_poll_which_runs_it_once(
    settings: Settings, arq_redis: ArqRedis, command: bytes
) -> None:
    job_ids = [f"claim-cut-{n}" for n in range(3)]
    for job_id in job_ids:
        assert await arq_redis.enqueue_job("record_run", _job_id=job_id) is not None
    runs: list[str] = []
    async with proxy_cutting_at(settings, b"\r\n" + command + b"\r\n") as proxy:
        worker = worker_through(proxy, settings, runs)
        try:
            # A claim's slot kept after the cut would leave this burst waiting forever.
            await asyncio.wait_for(worker.main(), timeout=30)
        finally:
            await worker.close()

    assert proxy.cuts == 1, "the proxy never saw the claim's command"
    assert sorted(runs) == job_ids
    assert worker.jobs_complete == len(job_ids)
    assert worker.job_counter == 0


def test_the_arq_command_line_builds_the_worker_whose_claims_survive_a_lost_connection(
    settings: Settings,
) -> None:
    # `arq worker.Settings` imports the worker package, then calls create_worker.
    built = arq.worker.create_worker(WorkerSettings, redis_settings=queue_redis_settings(settings))

    assert type(built) is ClaimSafeWorker
