"""Jobs: thin wrappers that turn an ARQ call into a call on the shared domain layer.

Each job takes ids, reloads state and does nothing if its work is done. Transient failures
(a dependency down or slow) are retried with exponential backoff and jitter; anything else fails
the job at once.
"""

import asyncio
import random
from collections.abc import Awaitable, Callable, Coroutine
from functools import wraps
from typing import Any, TypeVar

import aiosmtplib
import structlog
from arq import Retry

from shared import inventory, notifications
from shared.db import UNAVAILABLE_ERRORS
from shared.errors import ServiceUnavailable
from shared.redis import REDIS_UNAVAILABLE_ERRORS
from shared.settings import Settings
from worker.context import WorkerContext

log = structlog.get_logger(__name__)

TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    ServiceUnavailable,
    *UNAVAILABLE_ERRORS,
    *REDIS_UNAVAILABLE_ERRORS,
    aiosmtplib.SMTPException,
)

_BACKOFF_BASE_S = 1.0
_BACKOFF_CAP_S = 60.0

R = TypeVar("R")


def retry_delay_s(job_try: int) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**(try-1))]."""
    ceiling = min(_BACKOFF_CAP_S, _BACKOFF_BASE_S * 2 ** max(0, job_try - 1))
    return random.uniform(ceiling / 4, ceiling)


def job(
    function: Callable[[WorkerContext, int, str | None], Awaitable[R]],
) -> Callable[..., Coroutine[Any, Any, R]]:
    """Binds the job's ids to the log context, bounds its run time, and sorts its failures."""

    @wraps(function)
    async def run(ctx: dict[str, Any], order_id: int, *, request_id: str | None = None) -> R:
        settings: Settings = ctx["settings"]
        job_try: int = ctx.get("job_try", 1)
        with structlog.contextvars.bound_contextvars(
            job_id=ctx.get("job_id"),
            job=function.__name__,
            order_id=order_id,
            request_id=request_id,
            job_try=job_try,
        ):
            try:
                async with asyncio.timeout(settings.job_timeout_s):
                    return await function(ctx["worker"], order_id, request_id)
            except TRANSIENT_ERRORS as exc:
                delay_s = retry_delay_s(job_try)
                log.warning("job_retrying", error=repr(exc), retry_in_s=round(delay_s, 2))
                raise Retry(defer=delay_s) from exc

    return run


@job
async def reserve_inventory(worker: WorkerContext, order_id: int, request_id: str | None) -> str:
    status = await inventory.reserve_stock(
        worker.pool, worker.settings, worker.cache, order_id, request_id
    )
    log.info(
        "inventory_reserved" if status == "confirmed" else "inventory_not_reserved",
        status=status.value,
    )
    return status.value


@job
async def send_confirmation(worker: WorkerContext, order_id: int, request_id: str | None) -> bool:
    sent = await notifications.send_order_confirmation(
        worker.pool, worker.settings, worker.mailer, order_id
    )
    log.info("confirmation_sent" if sent else "confirmation_not_needed")
    return sent
