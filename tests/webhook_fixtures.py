"""For webhook tests: a real HTTP server on loopback that webhooks are delivered to, whose
answers a test sets; an API that allows loopback endpoints; a worker with short retries."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from arq import Worker
from arq.connections import RedisSettings
from arq.connections import create_pool as create_arq_pool

from devstack.services import free_port
from kit.settings import Settings
from tests.app_fixtures import JobRunner, api_with
from worker.settings import create_worker_context


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Answers each POST with `status` and `body`; hangs without answering while `hanging`."""

    port: int = field(default_factory=free_port)
    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    hanging: bool = False
    # A certificate and key (PEM files) to serve https with, instead of http.
    tls: tuple[str, str] | None = None
    received: list[Received] = field(default_factory=list)
    _server: uvicorn.Server | None = None
    _task: asyncio.Task[None] | None = None
    _released: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        if self.tls is not None:
            return f"https://localhost:{self.port}/hooks"
        return f"http://127.0.0.1:{self.port}/hooks"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.received.append(Received({k.decode(): v.decode() for k, v in scope["headers"]}, body))
        if self.hanging:
            # Until released; the answer then goes to a client that may have given up.
            await self._released.wait()
        await self._answer(send)

    async def _answer(self, send: Any) -> None:
        headers = [(k.encode(), v.encode()) for k, v in self.headers.items()]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})

    async def start(self) -> None:
        self._released = asyncio.Event()
        config = uvicorn.Config(
            self,
            host="127.0.0.1",
            port=self.port,
            lifespan="off",
            log_level="warning",
            access_log=False,
            ws="none",
            timeout_graceful_shutdown=1,
            ssl_certfile=None if self.tls is None else self.tls[0],
            ssl_keyfile=None if self.tls is None else self.tls[1],
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        async with asyncio.timeout(10):
            while not self._server.started:
                await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Closes the listening socket: connections are refused until `start` again."""
        if self._server is None or self._task is None:
            return
        self._released.set()
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._server = self._task = None

    def release(self) -> None:
        """Stops hanging: requests from now on are answered."""
        self.hanging = False
        self._released.set()

    def ids(self) -> list[str]:
        return [request.headers["webhook-id"] for request in self.received]


@contextlib.asynccontextmanager
async def running_receiver(**options: Any) -> AsyncIterator[Receiver]:
    receiver = Receiver(**options)
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.stop()


# Short enough for a test: retries within a second, a request given up after one.
FAST = {
    "webhook_allow_private_networks": True,
    "webhook_retry_backoff_s": 0.1,
    "webhook_retry_backoff_cap_s": 0.4,
    "webhook_timeout_s": 1.0,
    "webhook_connect_timeout_s": 0.5,
}


@pytest.fixture
async def hook_api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api_with(settings, webhook_allow_private_networks=True) as client:
        yield client


@contextlib.asynccontextmanager
async def pipeline(settings: Settings, **overrides: Any) -> AsyncIterator[JobRunner]:
    """The relay and ARQ jobs of a worker whose settings are `FAST` and `overrides`."""
    worker_settings = settings.model_copy(update={**FAST, **overrides})
    context = await create_worker_context(worker_settings)
    queue = await create_arq_pool(
        RedisSettings.from_dsn(settings.redis_url.get_secret_value()),
        default_queue_name=settings.queue_name,
    )
    try:
        yield JobRunner(worker_settings, context, queue)
    finally:
        await queue.aclose()
        await context.webhooks.close()
        await context.mailer.close()
        await context.redis.aclose()
        await context.pool.close()


@contextlib.asynccontextmanager
async def running_worker(runner: JobRunner, **options: Any) -> AsyncIterator[Worker]:
    """A worker and its outbox relay running in the background, as a worker process runs."""
    worker = runner.worker(burst=False, **options)
    relay = asyncio.create_task(runner.relay.run())
    main = asyncio.create_task(worker.main())
    try:
        yield worker
    finally:
        for task in (main, relay):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await worker.close()
