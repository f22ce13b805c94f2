"""Jobs: thin wrappers that turn an ARQ call into a call on the domain layer (`shop`).

Each job takes ids, reloads state and does nothing if its work is done. Transient failures
(a dependency down or slow) are retried with exponential backoff and jitter; anything else fails
the job at once. Every job that will not run again is recorded as a dead job.
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

from kit.db import CONTENTION_ERRORS, UNAVAILABLE_ERRORS
from kit.errors import ServiceUnavailable
from kit.redis import REDIS_UNAVAILABLE_ERRORS
from kit.settings import Settings
from shop.fulfilment import confirmation, inventory
from shop.jobs.dead_jobs import record_dead_job
from shop.jobs.names import JobName
from shop.models import OrderStatus
from worker.context import WorkerContext

log = structlog.get_logger(__name__)

TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    ServiceUnavailable,
    *UNAVAILABLE_ERRORS,
    *REDIS_UNAVAILABLE_ERRORS,
    *CONTENTION_ERRORS,
    aiosmtplib.SMTPException,
)

# ARQ drops a job without running it (and so without any record here) once its tries exceed
# max_tries, and fails it without a retry when its own timeout fires. The wrapper therefore owns
# both limits: ARQ is given tries it never reaches, and a timeout the wrapper always beats, by
# giving up on the job at JOB_TIMEOUT_S, letting it clean up for at most _CANCEL_GRACE_S and
# recording it within _RECORD_TIMEOUT_S.
ARQ_MAX_TRIES = 1_000_000
_CANCEL_GRACE_S = 1.0
_RECORD_TIMEOUT_S = 2.0
ARQ_TIMEOUT_MARGIN_S = 4

R = TypeVar("R")


def arq_timeout_s(settings: Settings) -> int:
    """ARQ's timeout for every job: a backstop that the wrapper's own limit always beats."""
    return settings.job_timeout_s + ARQ_TIMEOUT_MARGIN_S


def retry_delay_s(settings: Settings, job_try: int) -> float:
    """Exponential backoff with jitter: random in [ceiling/4, ceiling], the ceiling doubling.

    The jitter spreads retries of jobs that failed together (Postgres restarted under all of
    them); the floor keeps a retry from landing at once on a dependency that is still down.
    """
    ceiling = min(
        settings.job_retry_backoff_cap_s,
        settings.job_retry_backoff_s * 2 ** max(0, job_try - 1),
    )
    return random.uniform(ceiling / 4, ceiling)


def is_transient(exc: Exception) -> bool:
    """Whether the same job may succeed later; an SMTP 5xx answer is final, like bad data."""
    if isinstance(exc, aiosmtplib.SMTPResponseException) and 500 <= exc.code < 600:
        return False
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and all(
        500 <= refused.code < 600 for refused in exc.recipients
    ):
        return False
    return isinstance(exc, TRANSIENT_ERRORS)


JobFunction = Callable[[WorkerContext, int, str | None], Awaitable[R]]


def job(name: JobName) -> Callable[[JobFunction[R]], Callable[..., Coroutine[Any, Any, R | None]]]:
    def decorate(function: JobFunction[R]) -> Callable[..., Coroutine[Any, Any, R | None]]:
        return _job(name, function)

    return decorate


def _job(name: JobName, function: JobFunction[R]) -> Callable[..., Coroutine[Any, Any, R | None]]:
    """Binds the job's ids to the log context, bounds its run time, and sorts its failures.

    Transient failures are retried with backoff until `JOB_MAX_TRIES`; then, like permanent
    failures and bugs, the job is recorded as dead. A job that starts with its tries already
    spent (its worker died, or was killed, on the last one) is recorded as dead without running.
    When it cannot be recorded (Postgres is down) the job is retried instead, so it is recorded
    once Postgres is back rather than forgotten.
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
                await _record_dead(
                    ctx, name, order_id, request_id, "no try finished (worker killed or timed out)"
                )
                return None
            try:
                return await _bounded(
                    function(worker, order_id, request_id), settings.job_timeout_s
                )
            except Exception as exc:
                if not is_transient(exc) or job_try >= settings.job_max_tries:
                    await _record_dead(ctx, name, order_id, request_id, repr(exc), exc)
                    raise
                delay_s = retry_delay_s(settings, job_try)
                log.warning("job_retrying", error=repr(exc), retry_in_s=round(delay_s, 2))
                raise Retry(defer=delay_s) from exc

    return run


async def _bounded(work: Awaitable[R], timeout_s: float) -> R:
    """The job's result, or TimeoutError (transient) after `timeout_s` plus a short clean-up.

    Unlike `asyncio.timeout`, this does not wait without bound for the cancelled work to unwind
    (a query being cancelled, a connection being reset), so the wrapper always finishes before
    ARQ's own timeout, which would fail the job without a retry or a record.
    """
    task = asyncio.ensure_future(work)
    # Retrieves the outcome of work given up on, so that it is not reported as never retrieved.
    task.add_done_callback(lambda done: done.cancelled() or done.exception())
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout_s)
    except asyncio.CancelledError:  # the worker is shutting down: the work stops too
        task.cancel()
        await asyncio.wait({task}, timeout=_CANCEL_GRACE_S)
        raise
    if done:
        return task.result()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=_CANCEL_GRACE_S)
    if not done:
        log.warning("job_abandoned", timeout_s=timeout_s)
    raise TimeoutError(f"the job did not finish within {timeout_s} s")


async def _record_dead(
    ctx: dict[str, Any],
    name: JobName,
    order_id: int,
    request_id: str | None,
    error: str,
    exc: BaseException | None = None,
) -> None:
    """Records the job as dead, or raises Retry when Postgres cannot record it."""
    worker: WorkerContext = ctx["worker"]
    job_try: int = ctx.get("job_try", 1)
    trace = "".join(traceback.format_exception(exc)) if exc is not None else None
    log.error("job_dead", error=error)
    try:
        async with asyncio.timeout(_RECORD_TIMEOUT_S):
            await record_dead_job(
                worker.pool,
                worker.settings,
                job_id=ctx.get("job_id", ""),
                function=name.value,
                args=[order_id],
                kwargs={} if request_id is None else {"request_id": request_id},
                error=error,
                traceback=trace,
                tries=job_try,
                enqueued_at=ctx.get("enqueue_time"),
            )
    except Exception as record_exc:
        # The next try, past the limit, goes straight to recording.
        delay_s = retry_delay_s(worker.settings, job_try)
        log.error("dead_job_not_recorded", error=repr(record_exc), retry_in_s=round(delay_s, 2))
        raise Retry(defer=delay_s) from record_exc


@job(JobName.RESERVE_INVENTORY)
async def reserve_inventory(worker: WorkerContext, order_id: int, request_id: str | None) -> str:
    status = await inventory.reserve_inventory(
        worker.pool, worker.settings, worker.cache, order_id, request_id
    )
    if status is OrderStatus.CONFIRMED:
        # The confirmation job is in the outbox, announced by no NOTIFY: a NOTIFY serialises
        # every committing transaction that sends one
        # (docs/decisions/0018-reservation-in-one-statement.md).
        worker.outbox_written()
    log.info(
        "inventory_reserved" if status == "confirmed" else "inventory_not_reserved",
        status=status.value,
    )
    return status.value


@job(JobName.SEND_CONFIRMATION)
async def send_confirmation(worker: WorkerContext, order_id: int, request_id: str | None) -> bool:
    sent = await confirmation.send_confirmation(
        worker.pool, worker.settings, worker.mailer, worker.sent_confirmations, order_id
    )
    log.info("confirmation_sent" if sent else "confirmation_not_needed")
    return sent
