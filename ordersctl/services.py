"""How a command reaches Postgres and Redis: one way, for every command, and its errors."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

import asyncpg
import typer
from arq.connections import ArqRedis

from kit import tracing
from kit.db import UNAVAILABLE_ERRORS, connection, create_pool
from kit.errors import DomainError
from kit.redis import REDIS_UNAVAILABLE_ERRORS, create_queue_client
from kit.settings import Settings, get_settings
from ops.health import Level
from ordersctl.render import err_console

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    pool: asyncpg.Pool
    queue: ArqRedis

    def connection(self) -> AbstractAsyncContextManager[asyncpg.Connection]:
        return connection(self.pool, self.settings.db_pool_acquire_timeout_s)


@asynccontextmanager
async def _services() -> AsyncIterator[Services]:
    settings = get_settings()
    # No connection is opened up front, so `health` can report a Postgres that is down.
    pool = await create_pool(
        settings.model_copy(update={"db_pool_min_size": 0, "db_pool_max_size": 2}),
        application_name="ordersctl",
    )
    queue = create_queue_client(settings)
    try:
        yield Services(settings, pool, queue)
    finally:
        await queue.aclose()
        await pool.close()


def _span_name(work: Callable[..., object]) -> str:
    """`ordersctl outbox` for the work `outbox_command` defines, as every command does."""
    command, _, inner = getattr(work, "__qualname__", "").partition(".<locals>.")
    if not inner:
        return "ordersctl"
    return f"ordersctl {command.removesuffix('_command').replace('_', '-')}"


def run(work: Callable[[Services], Awaitable[T]]) -> T:
    """`work` on fresh connections in an event loop of its own, as a command runs once.

    A domain error (not found, conflict) exits 1 with its message; a service that cannot be
    reached exits 3, unknown.
    """

    # The provider exports what is left when the process exits (the SDK's own atexit hook).
    tracing.configure_tracing(get_settings(), "ordersctl")

    command = _span_name(work)

    async def run_work() -> T:
        # One trace per command, its Postgres and Redis calls the span's children.
        with tracing.span(command, **{"code.namespace": work.__module__}):
            async with _services() as services:
                return await work(services)

    try:
        return asyncio.run(run_work())
    except DomainError as exc:
        err_console.print(f"error: {exc.detail}", highlight=False, markup=False)
        raise typer.Exit(1) from exc
    except (*UNAVAILABLE_ERRORS, *REDIS_UNAVAILABLE_ERRORS) as exc:
        err_console.print(
            f"error: a service is unavailable: {exc!r}", highlight=False, markup=False
        )
        raise typer.Exit(Level.UNKNOWN) from exc
