"""Webhook jobs: a delivery's try, and the sweep that queues tries Redis lost (shop.webhooks).

Not the order jobs' wrapper (worker.tasks): a delivery counts its own tries in Postgres and
retries for days (WEBHOOK_MAX_AGE_S), each try a job of its own, where an order job retries a few
times within a minute.
"""

import asyncio
import math
import time
import traceback
from collections import Counter
from typing import Any

import structlog
from arq import Retry
from arq.connections import ArqRedis

from kit.db import CONTENTION_ERRORS, UNAVAILABLE_ERRORS
from kit.errors import ServiceUnavailable
from kit.settings import Settings
from shop.jobs.names import JobName
from shop.webhooks import delivery
from shop.webhooks.delivery import Outcome
from worker import tasks
from worker.context import WorkerContext

log = structlog.get_logger(__name__)

_TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    ServiceUnavailable,
    *UNAVAILABLE_ERRORS,
    *CONTENTION_ERRORS,
)
# A try ends itself this long before ARQ's timeout would (then ARQ would fail it without a retry).
_OWN_BOUND_MARGIN_S = 2


def arq_timeout_s(settings: Settings) -> int:
    """ARQ's backstop for a try, which the try's own bound always beats.

    No longer than the order jobs' unless WEBHOOK_TIMEOUT_S needs it: ARQ holds every job's
    in-progress lock for the longest timeout of any function plus 10 s, and that is how long
    the jobs of a killed worker wait before they run again (24 s by default).
    """
    return max(
        tasks.arq_timeout_s(settings),
        math.ceil(settings.webhook_timeout_s) + tasks.ARQ_TIMEOUT_MARGIN_S,
    )


async def deliver_webhook(
    ctx: dict[str, Any],
    delivery_id: int | list[list[int]],
    attempt: int | None = None,
    *,
    request_id: str | None = None,
    request_ids: list[str | None] | None = None,
) -> str | dict[str, int]:
    """One try (`delivery_id`, `attempt`), or a batch of them (a list of [delivery id, try]
    pairs, with `request_ids` in the same order) as the relay hands first tries over."""
    worker: WorkerContext = ctx["worker"]
    settings = worker.settings
    if isinstance(delivery_id, list):
        tries = [(int(pair[0]), int(pair[1])) for pair in delivery_id]
        requests = dict(zip((d for d, _ in tries), request_ids or [None] * len(tries), strict=True))
        bound: dict[str, Any] = {"deliveries": len(tries)}
    else:
        assert attempt is not None
        tries = [(delivery_id, attempt)]
        requests = {delivery_id: request_id}
        bound = {"delivery_id": delivery_id, "attempt": attempt, "request_id": request_id}
    with structlog.contextvars.bound_contextvars(
        job_id=ctx.get("job_id"), job=JobName.DELIVER_WEBHOOK.value, **bound
    ):
        with worker.webhooks.job_slot() as free:
            if not free:
                raise Retry(defer=delivery.busy_delay_s())
            own_bound_s = arq_timeout_s(settings) - _OWN_BOUND_MARGIN_S
            try:
                async with asyncio.timeout(own_bound_s):
                    batch = await delivery.deliver_many(
                        worker.pool,
                        settings,
                        worker.webhooks,
                        tries,
                        deadline=time.monotonic() + own_bound_s,
                    )
            except _TRANSIENT_ERRORS as exc:
                # Postgres (or the try ran out of time), not the receiver: the same tries
                # again, not counted as such; a receiver may get one twice, as at least once
                # allows.
                delay_s = delivery.retry_delay_s(settings, ctx.get("job_try", 1))
                log.warning("webhook_try_retrying", error=repr(exc), retry_in_s=round(delay_s, 2))
                raise Retry(defer=delay_s) from exc
            except Exception as exc:
                log.exception("webhook_try_failed")
                for failed_id, failed_try in tries:
                    await delivery.record_dead_job(
                        worker.pool,
                        settings,
                        delivery_id=failed_id,
                        attempt=failed_try,
                        error=repr(exc),
                        traceback="".join(traceback.format_exception(exc)),
                        tries=ctx.get("job_try", 1),
                        enqueued_at=ctx.get("enqueue_time"),
                    )
                raise
        for retried_id, result in batch.results.items():
            if result.outcome is Outcome.RETRYING:
                await _queue_try(ctx["redis"], settings, retried_id, result, requests[retried_id])
        for left_id, left_try in batch.left:
            # Not started before the job's time ran out: a job of its own, at once.
            await _queue_try(
                ctx["redis"],
                settings,
                left_id,
                delivery.Result(Outcome.RETRYING, left_try, None),
                requests[left_id],
            )
        if len(tries) == 1 and not batch.left:
            return batch.results[tries[0][0]].outcome.value
        outcomes = Counter(result.outcome.value for result in batch.results.values())
        return {**outcomes, "left": len(batch.left)}


async def _queue_try(
    queue: ArqRedis,
    settings: Settings,
    delivery_id: int,
    result: delivery.Result,
    request_id: str | None,
) -> None:
    assert result.next_attempt is not None
    kwargs: dict[str, Any] = {} if request_id is None else {"request_id": request_id}
    try:
        await queue.enqueue_job(
            JobName.DELIVER_WEBHOOK.value,
            delivery_id,
            result.next_attempt,
            _job_id=delivery.job_id(delivery_id, result.next_attempt),
            _queue_name=settings.queue_name,
            _defer_until=result.next_attempt_at,
            **kwargs,
        )
    except Exception as exc:  # recorded in Postgres already: the sweep queues it
        log.warning("webhook_try_not_queued", error=repr(exc))


async def queue_overdue_webhooks(ctx: dict[str, Any]) -> int:
    """Queues the tries that are overdue (Redis lost them); ARQ drops any it still has."""
    worker: WorkerContext = ctx["worker"]
    queue: ArqRedis = ctx["redis"]
    queued = 0
    for due in await delivery.overdue(worker.pool, worker.settings):
        kwargs: dict[str, Any] = {} if due.request_id is None else {"request_id": due.request_id}
        job = await queue.enqueue_job(
            JobName.DELIVER_WEBHOOK.value,
            due.id,
            due.attempts,
            _job_id=delivery.job_id(due.id, due.attempts),
            _queue_name=worker.settings.queue_name,
            **kwargs,
        )
        queued += job is not None
    if queued:
        log.warning("webhook_tries_requeued", tries=queued)
    return queued
