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
from typing import Any, TypeAlias, TypeVar

import aiosmtplib
import structlog
from arq import Retry

from kit import tracing
from kit.db import CONTENTION_ERRORS, UNAVAILABLE_ERRORS
from kit.errors import ServiceUnavailable
from kit.redis import REDIS_UNAVAILABLE_ERRORS
from kit.settings import Settings
from shop.fulfilment import confirmation, inventory
from shop.jobs.dead_jobs import record_dead_job
from shop.jobs.names import JobName, job_id_for
from shop.jobs.outcomes import OrderOutcomes
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


# A job's work, given its ARQ job id, its orders' ids, their request ids, and whether the job was
# called in the single-order form (`reserve_inventory(42, request_id=...)`: a batch of one, a job
# queued before batching, a dead job retried by hand) rather than with a list of ids.
JobFunction = Callable[
    [WorkerContext, str, list[int], dict[int, str | None], bool], Awaitable[OrderOutcomes[R]]
]
# What ARQ keeps as the job's result: the one order's, or each order's (an error's repr if dead).
JobResult: TypeAlias = R | dict[int, object] | None
_NO_TRY_FINISHED = "no try finished (worker killed or timed out)"


def job(
    name: JobName,
) -> Callable[[JobFunction[R]], Callable[..., Coroutine[Any, Any, JobResult[R]]]]:
    def decorate(function: JobFunction[R]) -> Callable[..., Coroutine[Any, Any, JobResult[R]]]:
        return _job(name, function)

    return decorate


def _job(
    name: JobName, function: JobFunction[R]
) -> Callable[..., Coroutine[Any, Any, JobResult[R]]]:
    """Binds the job's ids to the log context, bounds its run time, and sorts its failures.

    A job carries one order (`order_ids` an int) or a batch (a list, with `request_ids` and
    `traceparents` in the same order); its span continues its order's trace, or links to each of
    its orders' (kit.tracing.job_span). Failures are sorted order by order: an order that failed
    for good (it does not exist, its recipient was refused) is recorded as a dead job under its
    own job id (`send_confirmation:42`, as if it had been a job alone), and the others' results
    stand. If any order failed transiently, the job is retried with backoff until
    `JOB_MAX_TRIES`; the retry skips the orders whose work is done. Orders still failing then
    are recorded as dead too. A batch that fails as a whole for good (a bug one order's data
    triggers) is run again order by order, so that only the orders that fail alone are recorded
    as dead. A job that starts with its tries already spent (its worker died, or was killed, on
    the last one) records its orders as dead without running. When they cannot be recorded
    (Postgres is down) the job is retried instead, so they are recorded once Postgres is back
    rather than forgotten. A job of one order that fails for good fails in ARQ too; a batch job
    completes, its result naming the orders recorded as dead.
    """

    @wraps(function)
    async def run(
        ctx: dict[str, Any],
        order_ids: int | list[int],
        *,
        request_id: str | None = None,
        request_ids: list[str | None] | None = None,
        traceparent: str | None = None,
        traceparents: list[str | None] | None = None,
    ) -> JobResult[R]:
        job_id = ctx.get("job_id")
        count = len(order_ids) if isinstance(order_ids, list) else 1
        with tracing.job_span(
            name.value,
            traceparents or [traceparent],
            **{"messaging.system": "arq", "messaging.message.id": job_id or "", "orders": count},
        ):
            return await _run(ctx, order_ids, request_id, request_ids)

    async def _run(
        ctx: dict[str, Any],
        order_ids: int | list[int],
        request_id: str | None,
        request_ids: list[str | None] | None,
    ) -> JobResult[R]:
        worker: WorkerContext = ctx["worker"]
        settings = worker.settings
        job_try: int = ctx.get("job_try", 1)
        alone = not isinstance(order_ids, list)
        if isinstance(order_ids, list):
            ids = list(order_ids)
            by_order = dict(zip(ids, request_ids or [None] * len(ids), strict=True))
            bound: dict[str, Any] = {"orders": len(ids)}
        else:
            ids = [order_ids]
            by_order = {order_ids: request_id}
            bound = {"order_id": order_ids, "request_id": request_id}
        with structlog.contextvars.bound_contextvars(
            job_id=ctx.get("job_id"), job=name.value, job_try=job_try, **bound
        ):
            if job_try > settings.job_max_tries:
                await _record_dead(ctx, name, alone, by_order, dict.fromkeys(ids), _NO_TRY_FINISHED)
                return None
            try:
                outcomes = await _bounded(
                    _isolating(function, worker, ctx.get("job_id", ""), ids, by_order, alone),
                    settings.job_timeout_s,
                )
            except Exception as exc:
                if not is_transient(exc) or job_try >= settings.job_max_tries:
                    await _record_dead(ctx, name, alone, by_order, dict.fromkeys(ids, exc))
                    raise
                raise _retry(settings, job_try, exc) from exc
            retrying = job_try < settings.job_max_tries and any(
                is_transient(exc) for exc in outcomes.failed.values()
            )
            dead = {
                order_id: exc
                for order_id, exc in outcomes.failed.items()
                if not (retrying and is_transient(exc))
            }
            if dead:
                await _record_dead(ctx, name, alone, by_order, dict(dead))
            if retrying:
                transient = next(exc for exc in outcomes.failed.values() if is_transient(exc))
                raise _retry(
                    settings, job_try, transient, len(outcomes.failed) - len(dead)
                ) from transient
            if alone:
                if dead:
                    raise dead[ids[0]]
                return outcomes.done[ids[0]]
            return {**outcomes.done, **{order_id: repr(exc) for order_id, exc in dead.items()}}

    return run


def _retry(settings: Settings, job_try: int, exc: Exception, orders: int | None = None) -> Retry:
    delay_s = retry_delay_s(settings, job_try)
    log.warning("job_retrying", error=repr(exc), retry_in_s=round(delay_s, 2), failed_orders=orders)
    return Retry(defer=delay_s)


async def _isolating(
    function: JobFunction[R],
    worker: WorkerContext,
    job_id: str,
    ids: list[int],
    by_order: dict[int, str | None],
    alone: bool,
) -> OrderOutcomes[R]:
    """The batch's outcomes; if it failed as a whole for good, each order's on its own."""
    try:
        return await function(worker, job_id, ids, by_order, alone)
    except Exception as exc:
        if len(ids) == 1 or is_transient(exc):
            raise
        log.warning("job_batch_failed", error=repr(exc), retrying_orders_alone=len(ids))
    outcomes: OrderOutcomes[R] = OrderOutcomes()
    for order_id in ids:
        try:
            outcomes.update(
                await function(worker, job_id, [order_id], {order_id: by_order[order_id]}, False)
            )
        except Exception as exc:
            outcomes.fail(order_id, exc)
    return outcomes


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
    alone: bool,
    request_ids: dict[int, str | None],
    failures: dict[int, Exception | None],
    error: str | None = None,
) -> None:
    """Records each failed order's job as a dead job, or raises Retry when Postgres cannot
    record it. A job of one order is recorded under its own ARQ id (a retried dead job has an id
    of its own), each order of a batch under the id its job would have alone."""
    worker: WorkerContext = ctx["worker"]
    job_try: int = ctx.get("job_try", 1)
    for order_id, exc in failures.items():
        reason = error or repr(exc)
        trace = "".join(traceback.format_exception(exc)) if exc is not None else None
        request_id = request_ids.get(order_id)
        log.error("job_dead", error=reason, order_id=order_id, request_id=request_id)
        try:
            async with asyncio.timeout(_RECORD_TIMEOUT_S):
                await record_dead_job(
                    worker.pool,
                    worker.settings,
                    job_id=ctx.get("job_id", "") if alone else job_id_for(name, order_id),
                    function=name.value,
                    args=[order_id],
                    kwargs={} if request_id is None else {"request_id": request_id},
                    error=reason,
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
async def reserve_inventory(
    worker: WorkerContext,
    job_id: str,
    order_ids: list[int],
    request_ids: dict[int, str | None],
    alone: bool,
) -> OrderOutcomes[str]:
    outcomes = await inventory.reserve_inventory(
        worker.pool, worker.settings, worker.cache, order_ids, request_ids
    )
    if {OrderStatus.CONFIRMED, OrderStatus.REJECTED} & set(outcomes.done.values()):
        # The confirmation jobs and the events' deliveries are in the outbox, announced by no
        # NOTIFY: a NOTIFY serialises every committing transaction that sends one
        # (docs/decisions/0018-reservation-in-one-statement.md).
        worker.outbox_written()
    for order_id, status in outcomes.done.items():
        log.info(
            "inventory_reserved" if status is OrderStatus.CONFIRMED else "inventory_not_reserved",
            order_id=order_id,
            request_id=request_ids.get(order_id),
            status=status.value,
        )
    return OrderOutcomes(
        {order_id: s.value for order_id, s in outcomes.done.items()}, outcomes.failed
    )


@job(JobName.SEND_CONFIRMATION)
async def send_confirmation(
    worker: WorkerContext,
    job_id: str,
    order_ids: list[int],
    request_ids: dict[int, str | None],
    alone: bool,
) -> OrderOutcomes[bool]:
    # A batch retried for some of its orders leaves out those recorded as dead on an earlier
    # try; a job of one order is that order's, whatever the dead jobs say (a dead job retried by
    # hand may run before its record says it was retried).
    outcomes = await confirmation.send_confirmations(
        worker.pool,
        worker.settings,
        worker.mailer,
        worker.redis,
        order_ids,
        claimant=job_id or None,
        skip_dead=not alone,
    )
    for order_id, sent in outcomes.done.items():
        log.info(
            "confirmation_sent" if sent else "confirmation_not_needed",
            order_id=order_id,
            request_id=request_ids.get(order_id),
        )
    return outcomes
