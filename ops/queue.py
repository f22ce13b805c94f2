"""What is in the ARQ queue, read the way ARQ writes it, for operators (`queue_actions` changes it).

ARQ keeps a queue as a sorted set of job ids scored by due time (ms); each job's pickled
definition under `arq:job:<id>`; a lock `arq:in-progress:<id>` while a worker runs it (the id stays
in the queue until the job ends); the try count under `arq:retry:<id>`; and, once finished, the
pickled result, success or failure, under `arq:result:<id>` for `keep_result` (24 h here).

Everything here reads with SCAN, ZRANGE windows and pipelines, never KEYS, so it stays usable
with a million keys; walks that could be long stop at `scan_limit` jobs and say so (`complete`).
Under churn the numbers are a snapshot taken over a few round trips, not an atomic one.
"""

import pickle
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from arq.constants import (
    in_progress_key_prefix,
    job_key_prefix,
    result_key_prefix,
    retry_key_prefix,
)
from arq.utils import timestamp_ms
from redis.asyncio import Redis

from ops.redaction import redact, redact_text
from shop.jobs.keys import (
    JobOutcome,
    outcome_counter_key,
    parse_outcome_field,
    run_time_key,
    worker_key_prefix,
)
from shop.jobs.names import order_id_of

_WINDOW = 500
DEFAULT_SCAN_LIMIT = 100_000

QUEUED = "queued"
DEFERRED = "deferred"
IN_PROGRESS = "in-progress"
# A finished job's status is named by its outcome; ARQ records a cancelled one as failed.
COMPLETE = JobOutcome.COMPLETE
FAILED = JobOutcome.FAILED
DEAD = "dead"
STATUSES = (QUEUED, DEFERRED, IN_PROGRESS, COMPLETE, FAILED, DEAD)


def _ms_to_datetime(ms: float | int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


@dataclass(frozen=True, slots=True)
class JobInfo:
    job_id: str
    status: str
    function: str
    args: list[Any]
    kwargs: dict[str, Any]
    order_id: int | None
    tries: int | None
    enqueued_at: datetime | None
    due_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # The return value (complete) or the exception (failed), redacted.
    result: Any = None
    error: str | None = None
    traceback: str | None = None
    # Of a dead job: its id, and the id of the job that retried it (`redriven_job_id` in `--json`).
    dead_id: int | None = None
    redriven_job_id: str | None = None

    def matches(self, function: str | None, search: str | None) -> bool:
        if function is not None and self.function != function:
            return False
        if search is None:
            return True
        haystack = " ".join(
            (self.job_id, self.function, repr(self.args), repr(self.kwargs), self.error or "")
        )
        return search.lower() in haystack.lower()


def _unpickle(raw: bytes | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        # The queue's own Redis, written only by ARQ with pickle: the same trust ARQ places in it.
        data = pickle.loads(raw)  # noqa: S301
    except Exception:
        return None
    return data if isinstance(data, dict) else None


def _from_definition(
    job_id: str, status: str, score: float, data: dict[str, Any] | None, tries: int | None
) -> JobInfo:
    data = data or {}
    args = list(data.get("a", ()))
    return JobInfo(
        job_id=job_id,
        status=status,
        function=str(data.get("f", "<expired>")),
        args=redact(args),
        kwargs=redact(data.get("k", {})),
        order_id=order_id_of(args),
        tries=tries,
        enqueued_at=_ms_to_datetime(data.get("et")),
        due_at=_ms_to_datetime(score),
    )


def _from_result(job_id: str, data: dict[str, Any]) -> JobInfo:
    args = list(data.get("a", ()))
    success = bool(data.get("s"))
    outcome = data.get("r")
    return JobInfo(
        job_id=job_id,
        status=COMPLETE if success else FAILED,
        function=str(data.get("f", "")),
        args=redact(args),
        kwargs=redact(data.get("k", {})),
        order_id=order_id_of(args),
        tries=data.get("t"),
        enqueued_at=_ms_to_datetime(data.get("et")),
        started_at=_ms_to_datetime(data.get("st")),
        finished_at=_ms_to_datetime(data.get("ft")),
        result=redact(outcome) if success else None,
        error=None if success else redact_text(repr(outcome)),
    )


async def queue_windows(
    redis: Redis, queue: str, scan_limit: int
) -> AsyncIterator[list[tuple[str, float, dict[str, Any] | None, bool, int | None]]]:
    """The queue in due order, window by window: (id, score, definition, running, tries)."""
    start = 0
    while start < scan_limit:
        stop = min(start + _WINDOW, scan_limit) - 1
        entries: list[tuple[bytes, float]] = await redis.zrange(queue, start, stop, withscores=True)
        if not entries:
            return
        async with redis.pipeline(transaction=False) as pipe:
            for member, _ in entries:
                job_id = member.decode()
                pipe.get(job_key_prefix + job_id)
                pipe.exists(in_progress_key_prefix + job_id)
                pipe.get(retry_key_prefix + job_id)
            replies = await pipe.execute()
        window = []
        for index, (member, score) in enumerate(entries):
            raw, running, tries = replies[3 * index : 3 * index + 3]
            window.append(
                (
                    member.decode(),
                    score,
                    _unpickle(raw),
                    bool(running),
                    None if tries is None else int(tries),
                )
            )
        yield window
        start += _WINDOW


def _queue_status(score: float, running: bool, now_ms: int) -> str:
    if running:
        return IN_PROGRESS
    return DEFERRED if score > now_ms else QUEUED


@dataclass(slots=True)
class QueueStats:
    queue: str
    queued: int = 0
    deferred: int = 0
    in_progress: int = 0
    oldest_due_age_s: float | None = None
    # Outcomes of the jobs that ended in the last hour, from the workers' counters.
    last_hour: dict[str, int] = field(default_factory=dict)
    last_hour_by_function: dict[str, dict[str, int]] = field(default_factory=dict)
    # function -> status -> count, for the jobs in the queue now.
    functions: dict[str, dict[str, int]] = field(default_factory=dict)
    # False when the queue had more than `scan_limit` jobs: the per-function counts are partial.
    complete: bool = True


async def queue_stats(
    redis: Redis, queue: str, *, scan_limit: int = DEFAULT_SCAN_LIMIT
) -> QueueStats:
    now_ms = timestamp_ms()
    stats = QueueStats(queue=queue)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zcard(queue)
        pipe.zcount(queue, "-inf", now_ms)
        total, due = await pipe.execute()
    by_function: dict[str, Counter[str]] = {}
    seen = 0
    async for window in queue_windows(redis, queue, scan_limit):
        for _, score, data, running, _ in window:
            seen += 1
            status = _queue_status(score, running, now_ms)
            if status == IN_PROGRESS:
                stats.in_progress += 1
            elif status == QUEUED and stats.oldest_due_age_s is None:
                stats.oldest_due_age_s = max(0.0, (now_ms - score) / 1000)
            function = str((data or {}).get("f", "<expired>"))
            by_function.setdefault(function, Counter())[status] += 1
    stats.complete = seen >= total
    # Counted from the sorted set itself, so they are exact even when the walk stopped early.
    stats.deferred = total - due
    stats.queued = max(0, due - stats.in_progress)
    stats.functions = {name: dict(counts) for name, counts in sorted(by_function.items())}
    stats.last_hour_by_function = await outcomes_last_hour(redis, queue)
    totals: Counter[str] = Counter()
    for outcomes in stats.last_hour_by_function.values():
        totals.update(outcomes)
    stats.last_hour = dict(sorted(totals.items()))
    return stats


@dataclass(frozen=True, slots=True)
class MinuteOutcomes:
    """One minute of the workers' counters: runs that ended, by outcome, and their mean time."""

    minute: datetime
    outcomes: dict[str, int]
    mean_run_s: float | None


@dataclass(frozen=True, slots=True)
class LastHour:
    # function -> outcome -> count, over the 60 minutes.
    by_function: dict[str, dict[str, int]]
    # The 60 minutes, oldest first, this one last (partial).
    minutes: list[MinuteOutcomes]


async def last_hour(redis: Redis, queue: str) -> LastHour:
    """The last 60 minutes of the workers' counters, in one round trip."""
    now_minute = int(time.time() // 60)
    minutes = range(now_minute - 59, now_minute + 1)
    async with redis.pipeline(transaction=False) as pipe:
        for minute in minutes:
            pipe.hgetall(outcome_counter_key(queue, minute))
            pipe.hgetall(run_time_key(queue, minute))
        replies = await pipe.execute()
    by_function: dict[str, Counter[str]] = {}
    series = []
    for index, minute in enumerate(minutes):
        bucket, run_times = replies[2 * index], replies[2 * index + 1]
        outcomes: Counter[str] = Counter()
        for raw_field, raw_count in bucket.items():
            outcome, function = parse_outcome_field(raw_field.decode())
            by_function.setdefault(function, Counter())[outcome] += int(raw_count)
            outcomes[outcome] += int(raw_count)
        runs = sum(outcomes.values())
        total_ms = sum(int(ms) for ms in run_times.values())
        series.append(
            MinuteOutcomes(
                minute=datetime.fromtimestamp(minute * 60, tz=UTC),
                outcomes=dict(sorted(outcomes.items())),
                mean_run_s=round(total_ms / runs / 1000, 4) if runs and run_times else None,
            )
        )
    return LastHour(
        by_function={
            function: dict(sorted(c.items())) for function, c in sorted(by_function.items())
        },
        minutes=series,
    )


async def outcomes_last_hour(redis: Redis, queue: str) -> dict[str, dict[str, int]]:
    """function -> outcome -> count, over the last 60 minutes, from the workers' counters."""
    return (await last_hour(redis, queue)).by_function


async def list_jobs(
    redis: Redis,
    queue: str,
    *,
    statuses: tuple[str, ...],
    function: str | None = None,
    search: str | None = None,
    limit: int = 50,
    scan_limit: int = DEFAULT_SCAN_LIMIT,
) -> list[JobInfo]:
    """Jobs ARQ knows of with one of `statuses` (not `dead`: dead jobs are in Postgres).

    Queue jobs come in due order; finished ones newest first.
    """
    now_ms = timestamp_ms()
    found: list[JobInfo] = []
    if {QUEUED, DEFERRED, IN_PROGRESS} & set(statuses):
        async for window in queue_windows(redis, queue, scan_limit):
            for job_id, score, data, running, tries in window:
                status = _queue_status(score, running, now_ms)
                if status not in statuses:
                    continue
                info = _from_definition(job_id, status, score, data, tries)
                if info.matches(function, search):
                    found.append(info)
            if len(found) >= limit:
                break
    if {COMPLETE, FAILED} & set(statuses) and len(found) < limit:
        finished = [
            info
            for info in await _finished_jobs(redis, queue, scan_limit)
            if info.status in statuses and info.matches(function, search)
        ]
        finished.sort(key=lambda info: info.finished_at or datetime.min.replace(tzinfo=UTC))
        found.extend(reversed(finished))
    return found[:limit]


async def _finished_jobs(redis: Redis, queue: str, scan_limit: int) -> list[JobInfo]:
    found: list[JobInfo] = []
    seen = 0
    cursor = 0
    while True:
        cursor, keys = await redis.scan(cursor, match=result_key_prefix + "*", count=1000)
        if keys:
            async with redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.get(key)
                values = await pipe.execute()
            for key, raw in zip(keys, values, strict=True):
                data = _unpickle(raw)
                if data is None or data.get("q", queue) != queue:
                    continue
                found.append(_from_result(key.decode()[len(result_key_prefix) :], data))
            seen += len(keys)
        if cursor == 0 or seen >= scan_limit:
            return found


async def get_job(redis: Redis, queue: str, job_id: str) -> JobInfo | None:
    """One job as ARQ knows it, or None when ARQ has forgotten it (or never had it)."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.get(result_key_prefix + job_id)
        pipe.get(job_key_prefix + job_id)
        pipe.exists(in_progress_key_prefix + job_id)
        pipe.zscore(queue, job_id)
        pipe.get(retry_key_prefix + job_id)
        result_raw, job_raw, running, score, tries = await pipe.execute()
    result = _unpickle(result_raw)
    if result is not None:
        return _from_result(job_id, result)
    if score is None:
        return None
    return _from_definition(
        job_id,
        _queue_status(score, bool(running), timestamp_ms()),
        score,
        _unpickle(job_raw),
        None if tries is None else int(tries),
    )


async def get_failed_result(redis: Redis, queue: str, job_id: str) -> dict[str, Any] | None:
    """A failed job as `record_dead_job` takes it: real arguments, not redacted."""
    data = _unpickle(await redis.get(result_key_prefix + job_id))
    if data is None or data.get("s") or data.get("q", queue) != queue:
        return None
    # Pickling drops an exception's traceback; the job wrapper records it with the dead job itself.
    return {
        "job_id": job_id,
        "function": str(data.get("f", "")),
        "args": list(data.get("a", ())),
        "kwargs": dict(data.get("k", {})),
        "error": repr(data.get("r")),
        "traceback": None,
        "tries": int(data.get("t") or 1),
        "enqueued_at": _ms_to_datetime(data.get("et")),
    }


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    worker_id: str
    host: str
    pid: int
    started_at: datetime | None
    heartbeat_at: datetime | None
    heartbeat_age_s: float | None
    running: int
    done: int
    failed: int
    retried: int


async def live_workers(redis: Redis, queue: str) -> list[WorkerInfo]:
    prefix = worker_key_prefix(queue)
    keys: list[bytes] = []
    cursor = 0
    while True:
        cursor, batch = await redis.scan(cursor, match=prefix + "*", count=1000)
        keys.extend(batch)
        if cursor == 0:
            break
    if not keys:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.hgetall(key.decode())
        replies = await pipe.execute()
    now = time.time()
    workers = []
    for key, fields in zip(keys, replies, strict=True):
        if not fields:
            continue  # expired between the SCAN and the read
        data = {name.decode(): value.decode() for name, value in fields.items()}
        heartbeat = float(data.get("heartbeat_at", 0)) or None
        workers.append(
            WorkerInfo(
                worker_id=key.decode()[len(prefix) :],
                host=data.get("host", ""),
                pid=int(data.get("pid", 0)),
                started_at=_ms_to_datetime(float(data["started_at"]) * 1000)
                if "started_at" in data
                else None,
                heartbeat_at=_ms_to_datetime(heartbeat * 1000) if heartbeat else None,
                heartbeat_age_s=round(now - heartbeat, 3) if heartbeat else None,
                running=int(data.get("running", 0)),
                done=int(data.get("done", 0)),
                failed=int(data.get("failed", 0)),
                retried=int(data.get("retried", 0)),
            )
        )
    return sorted(workers, key=lambda worker: worker.worker_id)
