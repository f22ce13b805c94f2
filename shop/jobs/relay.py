"""The outbox relay: hands jobs that committed transactions recorded over to ARQ.

Writers insert outbox rows in the same transaction as the change that needs them, and wake the
relays after the commit: the API through a `RelayWaker`'s NOTIFY on the `outbox` channel, a job
by calling its own worker's relay directly. The relay also wakes on a timer (the sweep), so that
anything missed while Redis or the listener was down, a notification lost to a crash, or a job
written by another worker process is delivered without anyone acting. Delivery is at least once;
job ids derived from the outbox rows make ARQ drop a second copy of the same rows, and the jobs
themselves do nothing for an order whose work is done. Jobs whose work is still not done long
after they were handed over are handed over again, since Redis may have lost them.

Rows are claimed in batches, and the rows of one function in a claim go to the queue as jobs of
up to `JOB_BATCH_SIZE` orders each (shop.jobs.names): under load one job and one transaction
carry many orders, which is what lets a hot product's row take more than one order per commit
and keeps the queue's per-job cost off each order. A relay that handed rows over waits
`OUTBOX_LINGER_S` before its next claim, so that the rows committed meanwhile go together.
"""

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog
from arq.connections import ArqRedis
from arq.constants import job_key_prefix, result_key_prefix
from arq.jobs import serialize_job
from arq.utils import timestamp_ms

from kit import tracing
from kit.db import UNAVAILABLE_ERRORS, connection
from kit.redis import REDIS_UNAVAILABLE_ERRORS
from kit.settings import Settings
from shop.jobs import outbox_repository as outbox_repo
from shop.jobs.names import JobName, batch_job_id
from shop.jobs.outbox_repository import PendingJob

log = structlog.get_logger(__name__)

NOTIFY_CHANNEL = "outbox"
# How the relay's LISTEN connection shows in pg_stat_activity.
LISTENER_APPLICATION_NAME = "orders-relay-listener"
_MAX_BACKOFF_S = 5.0
# KEYS: the queue, then each job's job key and result key; ARGV: the jobs' expiry (ms from now),
# score, and whether a finished job's result gives way ('1': a redelivery), then each job's id
# and payload. Returns the ids it queued.
_ENQUEUE_SCRIPT = """
local queued = {}
local replace_finished = ARGV[3] == '1'
for i = 2, #KEYS, 2 do
    local n = i + 2
    if replace_finished and redis.call('EXISTS', KEYS[i]) == 0 then
        redis.call('DEL', KEYS[i + 1])
    end
    if redis.call('EXISTS', KEYS[i], KEYS[i + 1]) == 0 then
        redis.call('PSETEX', KEYS[i], ARGV[1], ARGV[n + 1])
        redis.call('ZADD', KEYS[1], ARGV[2], ARGV[n])
        table.insert(queued, ARGV[n])
    end
end
return queued
"""


class RelayWaker:
    """Wakes the outbox relays after commits: one NOTIFY for however many commits came meanwhile.

    Not a NOTIFY inside the committing transaction: Postgres serialises every committing
    transaction that notified, through a database-wide lock held until its commit record is
    flushed, so they cannot share a WAL flush. Measured on 64 connections inserting outbox rows:
    4,200 commits/s with the NOTIFY inside, 9,500/s without
    (docs/decisions/0005-notify-after-commit.md). Writers call `poke()` after their commit
    instead; one NOTIFY at a time is in flight, in a transaction that writes nothing, and pokes
    that arrive meanwhile share the next one. A notification lost (to a crash, or Postgres down)
    delays delivery until the relays' next sweep.
    """

    def __init__(self, pool: asyncpg.Pool, acquire_timeout_s: float) -> None:
        self._pool = pool
        self._acquire_timeout_s = acquire_timeout_s
        self._poked = False
        self._task: asyncio.Task[None] | None = None

    def poke(self) -> None:
        self._poked = True
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._notify(), name="outbox-relay-waker")

    async def _notify(self) -> None:
        while self._poked:
            self._poked = False
            try:
                async with connection(self._pool, self._acquire_timeout_s) as conn:
                    await conn.execute(f"SELECT pg_notify('{NOTIFY_CHANNEL}', '')")
            except Exception as exc:  # the sweep delivers what this notification would have
                log.warning("outbox_notify_failed", error=repr(exc))
                return

    async def close(self) -> None:
        """Sends the notification still owed, if any; call before closing the pool."""
        if self._task is not None:
            await self._task


@dataclass(frozen=True, slots=True)
class QueuedJob:
    """One ARQ job as the relay queues it, and the outbox rows it carries."""

    job_id: str
    function: str
    args: tuple[object, ...]
    kwargs: dict[str, Any]
    rows: tuple[PendingJob, ...]


def _single(row: PendingJob) -> QueuedJob:
    kwargs: dict[str, Any] = {} if row.request_id is None else {"request_id": row.request_id}
    if row.traceparent is not None:
        kwargs["traceparent"] = row.traceparent
    return QueuedJob(row.job_id, row.function, tuple(row.args), kwargs, (row,))


def _batch_argument(row: PendingJob) -> object | None:
    """What the row adds to a batch job's list: an order job's order id, a webhook try's
    [delivery id, try]; None for a row that is not batched."""
    if row.function == JobName.DELIVER_WEBHOOK.value:
        if len(row.args) == 2 and all(isinstance(arg, int) for arg in row.args):
            return list(row.args)
        return None
    if row.function in _ORDER_JOBS and len(row.args) == 1 and isinstance(row.args[0], int):
        return row.args[0]
    return None


_ORDER_JOBS = frozenset({JobName.RESERVE_INVENTORY.value, JobName.SEND_CONFIRMATION.value})


def batch_jobs(rows: list[PendingJob], batch_size: int) -> list[QueuedJob]:
    """The jobs that carry `rows`: those of one function in groups of at most `batch_size`, in
    row order, each called with the list of its rows' orders (or webhook tries) and their
    request ids and traceparents (which the job's span continues or links to:
    kit.tracing.job_span); a group of one, or a row of any other kind, as the row's own job."""
    groups: dict[str, list[tuple[PendingJob, object]]] = {}
    jobs: list[QueuedJob] = []
    for row in rows:
        argument = _batch_argument(row)
        if argument is None:
            jobs.append(_single(row))
        else:
            groups.setdefault(row.function, []).append((row, argument))
    for function, group in groups.items():
        for start in range(0, len(group), batch_size):
            chunk = group[start : start + batch_size]
            if len(chunk) == 1:
                jobs.append(_single(chunk[0][0]))
                continue
            kwargs: dict[str, Any] = {}
            if any(row.request_id is not None for row, _ in chunk):
                kwargs["request_ids"] = [row.request_id for row, _ in chunk]
            if any(row.traceparent is not None for row, _ in chunk):
                kwargs["traceparents"] = [row.traceparent for row, _ in chunk]
            jobs.append(
                QueuedJob(
                    batch_job_id(function, [row.id for row, _ in chunk]),
                    function,
                    ([argument for _, argument in chunk],),
                    kwargs,
                    tuple(row for row, _ in chunk),
                )
            )
    return jobs


class OutboxRelay:
    def __init__(self, pool: asyncpg.Pool, queue: ArqRedis, settings: Settings) -> None:
        self._pool = pool
        self._queue = queue
        self._settings = settings
        self._wake = asyncio.Event()
        self.delivered_total = 0
        self._enqueue_script = queue.register_script(_ENQUEUE_SCRIPT)

    async def _enqueue(
        self, rows: list[PendingJob], *, replace_finished: bool = False
    ) -> list[QueuedJob]:
        """Queues the rows as batch jobs, each unless ARQ has its id (queued, running or done;
        with `replace_finished`, only queued or running); returns the jobs queued.

        What `ArqRedis.enqueue_job` does for one job (a WATCH, an EXISTS, then MULTI/EXEC: three
        round trips on a connection of its own), done for all of them in one script, which
        Redis runs atomically: the same job key, payload, expiry and score, the same check.
        """
        jobs = batch_jobs(rows, self._settings.job_batch_size)
        enqueued_at_ms = timestamp_ms()
        keys = [self._settings.queue_name]
        args: list[bytes | str | int] = [
            self._queue.expires_extra_ms,
            enqueued_at_ms,
            "1" if replace_finished else "0",
        ]
        for job in jobs:
            payload = serialize_job(
                job.function,
                job.args,
                job.kwargs,
                None,
                enqueued_at_ms,
                serializer=self._queue.job_serializer,
            )
            keys += [job_key_prefix + job.job_id, result_key_prefix + job.job_id]
            args += [job.job_id, payload]
        with tracing.publish_span(
            f"{self._settings.queue_name} publish",
            [row.traceparent for row in rows],
            **{"messaging.system": "arq", "messaging.batch.message_count": len(jobs)},
        ):
            answer = await self._enqueue_script(keys=keys, args=args)
        queued = {job_id.decode() for job_id in answer}
        return [job for job in jobs if job.job_id in queued]

    async def deliver_pending(self) -> int:
        """Delivers every pending job, batch by batch; returns how many were delivered."""
        delivered = 0
        while True:
            async with connection(self._pool, self._settings.db_pool_acquire_timeout_s) as conn:
                batch: list[PendingJob] = []
                try:
                    async with conn.transaction():
                        batch = await outbox_repo.claim_pending(
                            conn, self._settings.outbox_batch_size
                        )
                        if not batch:
                            return delivered
                        await self._enqueue(batch)
                except REDIS_UNAVAILABLE_ERRORS as exc:
                    # The rows stay pending; note the attempt for operators and give up for now.
                    await outbox_repo.record_failed_delivery(
                        conn, [job.id for job in batch], repr(exc)
                    )
                    raise
            delivered += len(batch)
            self.delivered_total += len(batch)
            if len(batch) < self._settings.outbox_batch_size:
                return delivered

    async def redeliver_lost(self) -> int:
        """Hands over again jobs whose work is still not done long after they were handed over.

        Redis can lose queued jobs (a restart without persistence, a failover, an eviction), and
        ARQ can finish one without its work done; their orders would then wait for ever. A copy
        of a job ARQ still has queued or running is dropped, so this only brings back what was
        lost or ended unfinished; returns how many jobs were queued again.
        """
        acquire_timeout_s = self._settings.db_pool_acquire_timeout_s
        async with connection(self._pool, acquire_timeout_s) as conn, conn.transaction():
            batch = await outbox_repo.claim_unfinished(
                conn, self._settings.outbox_redeliver_after_s, self._settings.outbox_batch_size
            )
            if not batch:
                return 0
            # A job ARQ finished without doing its work (it failed in ARQ itself, outside the
            # jobs' own handling: a Redis error while it was claimed, its timeout) keeps its
            # result for a day, which would drop every copy of it meanwhile.
            queued = await self._enqueue(batch, replace_finished=True)
            # Restarts the clock, so each unfinished job is looked at once per period.
            await outbox_repo.mark_delivered(conn, [job.id for job in batch])
        # Rows handed over again in the same batch as before are dropped by ARQ if it still has
        # that job; in a batch of other rows they are queued again, and the job finds the work
        # of any order that is done (or in hand elsewhere) and skips it.
        lost = [row.job_id for job in queued for row in job.rows]
        if lost:
            log.warning(
                "outbox_redelivered",
                jobs=len(lost),
                job_ids=lost[:20],
                batch_job_ids=[job.job_id for job in queued][:20],
            )
        return len(lost)

    def wake(self, *_: object) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Delivers until cancelled: on every NOTIFY, and every sweep interval regardless."""
        listener: asyncpg.Connection | None = None
        backoff_s = 0.0
        # Lost jobs are looked for once per sweep interval, however often commits wake us.
        next_redelivery = 0.0
        try:
            while True:
                if listener is None or listener.is_closed():
                    listener = await self._listen()
                self._wake.clear()
                try:
                    count = await self.deliver_pending()
                    if count:
                        log.info("outbox_delivered", jobs=count)
                    if time.monotonic() >= next_redelivery:
                        await self.redeliver_lost()
                        next_redelivery = time.monotonic() + self._settings.outbox_sweep_interval_s
                    backoff_s = 0.0
                    if count and self._settings.outbox_linger_s:
                        # Rows committed meanwhile wake us and go in the next claim, together.
                        await asyncio.sleep(self._settings.outbox_linger_s)
                except Exception as exc:  # the relay must outlive any single failure
                    backoff_s = min(_MAX_BACKOFF_S, max(0.1, backoff_s * 2))
                    log.warning("outbox_delivery_failed", error=repr(exc), retry_in_s=backoff_s)
                    await asyncio.sleep(backoff_s)
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._wake.wait(), timeout=self._settings.outbox_sweep_interval_s
                    )
        finally:
            if listener is not None and not listener.is_closed():
                await listener.close(timeout=2)

    async def _listen(self) -> asyncpg.Connection | None:
        """A dedicated connection LISTENing for commits; None (sweeps only) if Postgres is down."""
        try:
            # DATABASE_LISTEN_URL: a transaction pooler would hand the LISTEN's session on.
            listener = await asyncpg.connect(
                self._settings.listen_url,
                timeout=self._settings.db_connect_timeout_s,
                server_settings={"application_name": LISTENER_APPLICATION_NAME},
            )
            await listener.add_listener(NOTIFY_CHANNEL, self.wake)
        except (*UNAVAILABLE_ERRORS, asyncpg.PostgresError) as exc:
            log.warning("outbox_listen_failed", error=repr(exc))
            return None
        return listener
