"""ARQ's worker, with a job claim that a lost Redis connection leaves for the next poll.

ARQ claims a job by watching its in-progress key, reading it and the job's score, then setting
the key in a transaction. A connection lost after the WATCH (a Redis failover, a partition)
makes redis-py raise a WatchError from the read, not from the transaction that ARQ guards: it
left ARQ's poll loop and ended the worker, and the job slot taken for the claim was never given
back. Here such a claim gives its slot back and leaves the job in the queue, unclaimed, for the
next poll on a new connection: nothing ran it, so nothing runs twice.

`arq worker.Settings` builds its worker through `arq.worker.create_worker`, which offers no
choice of class; `install` makes that function build this one.
"""

import arq.worker
import structlog
from arq.constants import in_progress_key_prefix
from arq.utils import timestamp_ms
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError, WatchError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = structlog.get_logger(__name__)

# What a claim raises when its connection is lost: a WatchError escapes only then, since a
# watched key's change shows up in the transaction, which `_claim` handles.
_CLAIM_INTERRUPTED = (WatchError, RedisConnectionError, RedisTimeoutError, OSError)


class ClaimSafeWorker(arq.worker.Worker):
    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """Starts each job this worker claims, a slot each, as ARQ's own does; on a lost
        connection, gives the claim's slot back and leaves the rest of the jobs for the next poll,
        which reconnects."""
        for job_id_b in job_ids:
            await self.sem.acquire()
            if self.job_counter >= self.max_jobs:
                self.sem.release()
                return
            self.job_counter += 1
            job_id = job_id_b.decode()
            try:
                score = await self._claim(job_id)
            except _CLAIM_INTERRUPTED as error:
                self._release_slot()
                log.warning("job_claim_interrupted", job_id=job_id, error=repr(error))
                return
            if score is None:
                self._release_slot()
                continue
            task = self.loop.create_task(self.run_job(job_id, score))
            task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
            self.tasks[job_id] = task

    async def _claim(self, job_id: str) -> int | None:
        """Marks the job in progress; its score, or None if it is not this worker's to run:
        running elsewhere, finished, deferred again or claimed by another worker meanwhile."""
        in_progress_key = in_progress_key_prefix + job_id
        async with self.pool.pipeline(transaction=True) as pipe:
            await pipe.watch(in_progress_key)
            ongoing_exists = await pipe.exists(in_progress_key)
            score = await pipe.zscore(self.queue_name, job_id)
            if ongoing_exists or not score or score > timestamp_ms():
                return None
            pipe.multi()  # type: ignore[no-untyped-call]
            pipe.psetex(in_progress_key, int(self.in_progress_timeout_s * 1000), b"1")
            try:
                await pipe.execute()
            except (ResponseError, WatchError):
                # Claimed elsewhere since the WATCH, or a replica's read-only answer in a failover.
                return None
        return int(score)

    def _release_slot(self) -> None:
        self.job_counter -= 1
        self.sem.release()


def install() -> None:
    """Makes `arq worker.Settings` (arq.worker.create_worker) build a ClaimSafeWorker."""
    arq.worker.Worker = ClaimSafeWorker  # type: ignore[misc]
