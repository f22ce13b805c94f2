"""An order's life in time order, from Postgres (its states, outbox rows, dead jobs) and ARQ."""

import asyncio
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from redis.asyncio import Redis

from kit.db import connection
from kit.settings import Settings
from ops import queue
from ops.queue import JobInfo
from ops.redaction import redact_text
from shop.jobs import dead_job_repository as dead_jobs_repo
from shop.jobs import outbox_repository as outbox_repo
from shop.orders import repository as orders_repo


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
    events.sort(key=lambda event: event.at)
    return OrderTimeline(
        order_id=order.id,
        status=order.status.value,
        request_id=outbox[0].request_id if outbox else None,
        events=events,
        jobs=jobs,
    )
