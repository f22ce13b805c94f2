"""An order's life in time order, from Postgres (its states, outbox rows, dead jobs) and ARQ."""

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
from redis.asyncio import Redis

from kit.db import connection
from kit.settings import Settings
from ops import queue
from ops.queue import JobInfo
from ops.redaction import redact_text
from shop.jobs import dead_job_repository as dead_jobs_repo
from shop.jobs import outbox_repository as outbox_repo
from shop.jobs.dead_job_repository import DeadJob
from shop.jobs.outbox_repository import OutboxEntry
from shop.orders import repository as orders_repo
from shop.orders.schemas import OrderPublic


@dataclass(frozen=True, slots=True)
class TimelineEvent:
    at: datetime
    event: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class OrderTimeline:
    order_id: int
    status: str
    request_id: str | None
    events: list[TimelineEvent]
    jobs: list[JobInfo]


async def order_timeline(
    pool: asyncpg.Pool, redis: Redis, settings: Settings, order_id: int
) -> OrderTimeline | None:
    """The order's life in time order: its states, its jobs and their outcomes, its email."""
    async with connection(pool, settings.db_pool_acquire_timeout_s) as conn:
        order = await orders_repo.get(conn, order_id)
        if order is None:
            return None
        outbox = await outbox_repo.list_for_order(conn, order_id)
        deaths = await dead_jobs_repo.list_for_order(conn, order_id)
    events = [
        TimelineEvent(order.created_at, "placed", f"total {order.total_cents} {order.currency}")
    ]
    if order.confirmed_at:
        events.append(TimelineEvent(order.confirmed_at, "confirmed", "stock reserved"))
    if order.rejected_at:
        events.append(TimelineEvent(order.rejected_at, "rejected", order.rejection_reason or ""))
    if order.cancelled_at:
        events.append(TimelineEvent(order.cancelled_at, "cancelled"))
    if order.confirmation_sent_at:
        events.append(TimelineEvent(order.confirmation_sent_at, "email sent", "confirmation"))
    job_ids: list[str] = []
    for entry in outbox:
        job_ids.append(entry.job_id)
        events.append(TimelineEvent(entry.created_at, "job written to outbox", entry.job_id))
        if entry.delivered_at:
            events.append(
                TimelineEvent(
                    entry.delivered_at,
                    "job handed to queue",
                    f"{entry.job_id} (attempt {entry.delivery_attempts})",
                )
            )
    for dead in deaths:
        events.append(
            TimelineEvent(dead.failed_at, "job dead", f"{dead.job_id}: {redact_text(dead.error)}")
        )
        if dead.redriven_at and dead.redriven_job_id:
            events.append(TimelineEvent(dead.redriven_at, "job re-driven", dead.redriven_job_id))
            job_ids.append(dead.redriven_job_id)
    jobs = [
        job
        for job in await asyncio.gather(
            *(queue.get_job(redis, settings.queue_name, job_id) for job_id in job_ids)
        )
        if job is not None
    ]
    for job in jobs:
        if job.started_at:
            events.append(
                TimelineEvent(job.started_at, "job started", f"{job.job_id} try {job.tries}")
            )
        if job.finished_at:
            complete = job.status == queue.COMPLETE
            outcome = f"result {job.result!r}" if complete else job.error or ""
            events.append(
                TimelineEvent(job.finished_at, f"job {job.status}", f"{job.job_id}: {outcome}")
            )
    events.extend(_purged(order, outbox, deaths, settings))
    events.sort(key=lambda event: event.at)
    return OrderTimeline(
        order_id=order.id,
        status=order.status.value,
        request_id=outbox[0].request_id if outbox else None,
        events=events,
        jobs=jobs,
    )


def _purged(
    order: OrderPublic,
    outbox: list[OutboxEntry],
    deaths: list[DeadJob],
    settings: Settings,
) -> list[TimelineEvent]:
    """What retention took from this order's history, said rather than left out: an order past
    OUTBOX_RETENTION_S has no outbox rows left, its retried dead jobs go after
    DEAD_JOB_RETENTION_S, and ARQ forgets results after a day."""
    if outbox:
        return []
    due_at = order.created_at + timedelta(seconds=settings.outbox_retention_s)
    if datetime.now(UTC) < due_at:
        return []
    detail = (
        f"its outbox rows were purged (OUTBOX_RETENTION_S = {settings.outbox_retention_s} s)"
        f"; retried dead jobs go after DEAD_JOB_RETENTION_S = {settings.dead_job_retention_s} s"
    )
    if deaths:
        detail += f"; {len(deaths)} dead job(s) still recorded"
    return [TimelineEvent(due_at, "history purged", detail)]
