"""The worker and the API as real child processes, for tests that signal or kill them.

Output goes to a file rather than a pipe, so a chatty process can never block on a full pipe;
`output()` reads it. Every process started here is stopped by `close()`, kill -9 if need be.
"""

import asyncio
import enum
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Any

import asyncpg
import httpx
import pytest

from api.server import granian_args
from devstack import processes
from devstack.services import LOOPBACK, free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


class ChildProcess(processes.ChildProcess):
    """A child whose output the test reads, and whose death it causes; in the network
    namespace `netns` (`ip netns exec`) when given, as on a host of its own."""

    def __init__(
        self, argv: list[str], env: dict[str, str] | None = None, *, netns: str | None = None
    ) -> None:
        self._log: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 -- closed in close()
        if netns is not None:
            argv = ["ip", "netns", "exec", netns, *argv]
        super().__init__(argv, {**os.environ, "LOG_FORMAT": "json", **(env or {})}, self._log)

    def start(self) -> "ChildProcess":
        super().start()
        return self

    def kill(self) -> None:
        """kill -9: no clean-up of any kind, as when the machine or the OOM killer takes it."""
        self.signal(signal.SIGKILL)
        self.wait(10)

    def output(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def log_events(self) -> list[dict[str, Any]]:
        """The structlog JSON lines in the output, without the servers' own plain-text lines."""
        return [json.loads(line) for line in self.output().splitlines() if line.startswith("{")]

    def close(self) -> None:
        self.kill_group()
        self._log.close()


class WorkerProcess(ChildProcess):
    """`arq worker.Settings`, with settings from the environment plus `env`."""

    def __init__(self, env: dict[str, str] | None = None, *, netns: str | None = None) -> None:
        super().__init__([str(BIN / "arq"), "worker.Settings"], env, netns=netns)

    async def wait_until_started(self, timeout_s: float = 30.0, *, starts: int = 1) -> None:
        """Until the worker has started `starts` times in all (after restarts, more than one)."""
        deadline = time.monotonic() + timeout_s
        while self.output().count("worker_started") < starts:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"the worker exited:\n{self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the worker did not start:\n{self.output()}")
            await asyncio.sleep(0.05)


class Server(enum.StrEnum):
    """The ASGI servers the API runs under: Granian in production, uvicorn still supported."""

    GRANIAN = "granian"
    UVICORN = "uvicorn"


class ApiProcess(ChildProcess):
    """The API on `host`:`port` (a free loopback port by default): the production Granian
    command (`api.server`), or `uvicorn api.main:app`; extra command-line arguments after it."""

    def __init__(
        self,
        *args: str,
        server: Server = Server.GRANIAN,
        env: dict[str, str] | None = None,
        host: str = LOOPBACK,
        port: int | None = None,
        netns: str | None = None,
    ) -> None:
        self.port = free_port() if port is None else port
        self.url = f"http://{host}:{self.port}"
        if server is Server.GRANIAN:
            argv = [str(BIN / "granian"), *granian_args(host, self.port)]
        else:
            uvicorn = str(BIN / "uvicorn")
            argv = [uvicorn, "api.main:app", "--host", host, "--port", str(self.port)]
        super().__init__([*argv, *args], env, netns=netns)

    async def wait_until_ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(base_url=self.url, timeout=1) as client:
            while True:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise AssertionError(f"the API exited:\n{self.output()}")
                try:
                    if (await client.get("/readyz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"the API did not become ready:\n{self.output()}")
                await asyncio.sleep(0.1)


def live_gauge_pids(multiprocess_dir: Path) -> set[int]:
    """The API processes whose live gauges (their pools') are in a PROMETHEUS_MULTIPROC_DIR:
    written when a process's lifespan starts, dropped when its lifespan shutdown ends (so not
    when the process is killed)."""
    return {int(path.stem.rsplit("_", 1)[1]) for path in multiprocess_dir.glob("gauge_live*.db")}


@pytest.fixture
def spawn_worker() -> Iterator[Callable[..., WorkerProcess]]:
    """Starts `arq worker.Settings` processes (env overrides as keywords); all stopped after."""
    started: list[WorkerProcess] = []

    def spawn(**env: str) -> WorkerProcess:
        worker = WorkerProcess(env)
        started.append(worker)
        worker.start()
        return worker

    yield spawn
    for worker in started:
        worker.close()


@pytest.fixture
def spawn_api() -> Iterator[Callable[..., ApiProcess]]:
    """Starts API processes (extra command-line arguments, the server, env overrides as
    keywords); all stopped after."""
    started: list[ApiProcess] = []

    def spawn(*args: str, server: Server = Server.GRANIAN, **env: str) -> ApiProcess:
        api = ApiProcess(*args, server=server, env=env)
        started.append(api)
        api.start()
        return api

    yield spawn
    for api in started:
        api.close()


@asynccontextmanager
async def row_locked(db: asyncpg.Pool, table: str, row_id: int) -> AsyncIterator[None]:
    """Holds `SELECT ... FOR UPDATE` on one row: whoever needs that row waits until we leave."""
    assert table in {"orders", "products"}
    async with db.acquire() as conn, conn.transaction():
        await conn.execute(f"SELECT 1 FROM {table} WHERE id = $1 FOR UPDATE", row_id)
        yield


@asynccontextmanager
async def writes_held(db: asyncpg.Pool, table: str) -> AsyncIterator[None]:
    """Holds `LOCK TABLE ... IN SHARE MODE`: whoever writes to the table waits until we leave."""
    assert table in {"orders", "products"}
    async with db.acquire() as conn, conn.transaction():
        await conn.execute(f"LOCK TABLE {table} IN SHARE MODE")
        yield


async def backends_waiting_for_a_lock(db: asyncpg.Pool, application_name: str) -> int:
    count: int = await db.fetchval(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE application_name = $1 AND wait_event_type = 'Lock'",
        application_name,
    )
    return count
