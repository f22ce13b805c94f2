"""Jobs: thin wrappers that turn an ARQ call into a call on the shared domain layer.

Each job takes ids, reloads state and does nothing if its work is done. Transient failures
(a dependency down or slow) are retried with exponential backoff and jitter; anything else fails
the job at once.
"""

import asyncio
import random
import traceback
from collections.abc import Awaitable, Callable, Coroutine
from functools import wraps
from typing import Any, TypeVar

import aiosmtplib
import structlog
from arq import Retry

from shared import inventory, notifications
from shared.db import UNAVAILABLE_ERRORS
from shared.dead_letters import record_dead_job
from shared.errors import ServiceUnavailable
from shared.jobs import JobName
from shared.redis import REDIS_UNAVAILABLE_ERRORS
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


JobFunction = Callable[[WorkerContext, int, str | None], Awaitable[R]]


def job(name: JobName) -> Callable[[JobFunction[R]], Callable[..., Coroutine[Any, Any, R | None]]]:
    def decorate(function: JobFunction[R]) -> Callable[..., Coroutine[Any, Any, R | None]]:
        return _job(name, function)

    return decorate


def _job(name: JobName, function: JobFunction[R]) -> Callable[..., Coroutine[Any, Any, R | None]]:
    """Binds the job's ids to the log context, bounds its run time, and sorts its failures.

    Transient failures are retried with backoff until `JOB_MAX_TRIES`; then, like permanent
    failures and bugs, the job goes to the dead-job ledger. ARQ is given one try more than the
    ledger so that a job whose worker died on its last try is also recorded, not just dropped.
    """

    @wraps(function)
    async def run(ctx: dict[str, Any], order_id: int, *, request_id: str | None = None) -> R | None:
        worker: WorkerContext = ctx["worker"]
        settings = worker.settings
        job_try: int = ctx.get("job_try", 1)
        with structlog.contextvars.bound_contextvars(
            job_id=ctx.get("job_id"),
            job=name.value,
            order_id=order_id,
            request_id=request_id,
            job_try=job_try,
        ):
            if job_try > settings.job_max_tries:
                await _bury(
                    ctx, name, order_id, request_id, "no try finished (worker killed or timed out)"
                )
                return None
            try:
                async with asyncio.timeout(settings.job_timeout_s):
                    return await function(worker, order_id, request_id)
            except TRANSIENT_ERRORS as exc:
                if job_try >= settings.job_max_tries:
                    await _bury(ctx, name, order_id, request_id, repr(exc), exc)
                    raise
                delay_s = retry_delay_s(job_try)
                log.warning("job_retrying", error=repr(exc), retry_in_s=round(delay_s, 2))
                raise Retry(defer=delay_s) from exc
            except Exception as exc:
                await _bury(ctx, name, order_id, request_id, repr(exc), exc)
                raise

    return run


async def _bury(
    ctx: dict[str, Any],
    name: JobName,
    order_id: int,
    request_id: str | None,
    error: str,
    exc: BaseException | None = None,
) -> None:
    worker: WorkerContext = ctx["worker"]
    trace = "".join(traceback.format_exception(exc)) if exc is not None else None
    log.error("job_dead", error=error)
    try:
        await record_dead_job(
            worker.pool,
            worker.settings,
            job_id=ctx.get("job_id", ""),
            function=name.value,
            args=[order_id],
            kwargs={} if request_id is None else {"request_id": request_id},
            error=error,
            traceback=trace,
            tries=ctx.get("job_try", 1),
            enqueued_at=ctx.get("enqueue_time"),
        )
    except Exception as record_exc:  # the ARQ failure record and this log line remain
        log.error("dead_job_not_recorded", error=repr(record_exc))


@job(JobName.RESERVE_INVENTORY)
async def reserve_inventory(worker: WorkerContext, order_id: int, request_id: str | None) -> str:
    status = await inventory.reserve_stock(
        worker.pool, worker.settings, worker.cache, order_id, request_id
    )
    log.info(
        "inventory_reserved" if status == "confirmed" else "inventory_not_reserved",
        status=status.value,
    )
    return status.value


@job(JobName.SEND_CONFIRMATION)
async def send_confirmation(worker: WorkerContext, order_id: int, request_id: str | None) -> bool:
    sent = await notifications.send_order_confirmation(
        worker.pool, worker.settings, worker.mailer, order_id
    )
    log.info("confirmation_sent" if sent else "confirmation_not_needed")
    return sent
