"""`ordersctl jobs`, `job`, `retry` and `abort` (ordersctl/commands/jobs.py)."""

import asyncio
import json
from collections.abc import Callable

import asyncpg
import httpx
import pytest
from arq.connections import ArqRedis

from kit.settings import Settings
from tests.app_fixtures import JobRunner, wait_for
from tests.ordersctl.fixtures import Jobs, MakeProduct, ctl, ctl_json, place


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("queued", lambda jobs: [jobs.queued]),
        ("deferred", lambda jobs: [jobs.deferred]),
        ("complete", lambda jobs: sorted(jobs.complete)),
        ("failed", lambda jobs: sorted([jobs.dead, jobs.failed_unrecorded])),
        ("dead", lambda jobs: [jobs.dead]),
    ],
)
async def test_jobs_lists_each_status(
    every_state: Jobs, status: str, expected: Callable[[Jobs], list[str]]
) -> None:
    listed = await ctl_json("jobs", "--status", status)

    assert sorted(job["job_id"] for job in listed) == expected(every_state)
    assert {job["status"] for job in listed} == {status}
    table = await ctl("jobs", "--status", status)
    assert table.exit_code == 0
    for job_id in expected(every_state):
        assert job_id in table.stdout


async def test_jobs_filters_by_function_and_search_and_limit(every_state: Jobs) -> None:
    by_function = await ctl_json("jobs", "--function", "send_confirmation")
    searched = await ctl_json("jobs", "--search", "999999")
    limited = await ctl_json("jobs", "--limit", "2")

    assert {job["function"] for job in by_function} == {"send_confirmation"}
    assert {job["job_id"] for job in by_function} == {
        every_state.deferred,
        every_state.complete[1],
        every_state.failed_unrecorded,
    }
    # The failure in ARQ and the dead job in Postgres.
    assert [(job["job_id"], job["status"]) for job in searched] == [
        (every_state.dead, "failed"),
        (every_state.dead, "dead"),
    ]
    assert len(limited) == 2


async def test_jobs_refuses_an_unknown_status(every_state: Jobs) -> None:
    result = await ctl("jobs", "--status", "lost")

    assert result.exit_code == 2
    assert "--status must be one of" in result.stderr


async def test_job_shows_a_dead_job_with_its_order_and_traceback(every_state: Jobs) -> None:
    detail = await ctl_json("job", every_state.dead)

    assert detail["job"]["status"] == "failed"
    assert detail["job"]["function"] == "reserve_inventory"
    assert detail["job"]["order_id"] == 999_999
    assert detail["job"]["tries"] == 1
    assert detail["job"]["started_at"] <= detail["job"]["finished_at"]
    [dead] = detail["ledger"]
    assert dead["status"] == "dead"
    assert "order 999999 does not exist" in dead["error"]
    assert "Traceback" in dead["traceback"]
    assert "PermanentJobError" in dead["traceback"]
    table = await ctl("job", every_state.dead)
    assert table.exit_code == 0
    assert "PermanentJobError" in table.stdout


async def test_job_shows_a_complete_job_with_its_result_and_order(every_state: Jobs) -> None:
    detail = await ctl_json("job", every_state.complete[0])

    assert detail["job"]["status"] == "complete"
    assert detail["job"]["result"] == "confirmed"
    assert detail["job"]["order_id"] == every_state.confirmed_order
    assert detail["order_status"] == "confirmed"
    assert detail["ledger"] == []


async def test_job_redacts_personal_data_in_arguments_and_errors(every_state: Jobs) -> None:
    result = await ctl("job", every_state.failed_unrecorded, "--json")
    table = await ctl("job", every_state.failed_unrecorded)

    detail = json.loads(result.stdout)
    assert detail["job"]["kwargs"] == {"customer_email": "[redacted]"}
    assert "TypeError" in detail["job"]["error"]
    for output in (result.stdout, table.stdout):
        assert "grace@example.com" not in output
    assert "[redacted]" in table.stdout


async def test_job_of_an_unknown_id_is_an_error(every_state: Jobs) -> None:
    result = await ctl("job", "no-such-job")

    assert result.exit_code == 1
    assert "There is no job no-such-job" in result.stderr


async def test_retry_enqueues_a_dead_job_again_once_under_a_new_id(
    every_state: Jobs, arq_redis: ArqRedis, db: asyncpg.Pool, settings: Settings
) -> None:
    first = await ctl_json("retry", every_state.dead)
    again = await ctl("retry", every_state.dead)

    [retried] = first["redriven"]
    assert retried["new_job_id"] == f"{every_state.dead}:redrive-1"
    assert await arq_redis.zscore(settings.queue_name, retried["new_job_id"]) is not None
    row = await db.fetchrow("SELECT redriven_at, redriven_job_id FROM dead_jobs")
    assert row["redriven_at"] is not None
    assert row["redriven_job_id"] == retried["new_job_id"]
    assert again.exit_code == 1
    assert "re-driven already" in again.stderr


async def test_retry_of_a_failed_job_records_it_as_dead_first(
    every_state: Jobs, arq_redis: ArqRedis, db: asyncpg.Pool, settings: Settings
) -> None:
    result = await ctl("retry", every_state.failed_unrecorded)

    assert result.exit_code == 0, result.output
    row = await db.fetchrow(
        "SELECT args, kwargs, redriven_job_id FROM dead_jobs WHERE job_id = $1",
        every_state.failed_unrecorded,
    )
    # The dead job keeps the real arguments: its retry needs them.
    assert json.loads(row["args"]) == [999_998]
    assert json.loads(row["kwargs"]) == {"customer_email": "grace@example.com"}
    assert await arq_redis.zscore(settings.queue_name, row["redriven_job_id"]) is not None
    assert "grace@example.com" not in result.stdout


@pytest.mark.parametrize("job", ["queued", "deferred", "complete"])
async def test_retry_refuses_jobs_that_are_not_dead_or_failed(every_state: Jobs, job: str) -> None:
    job_id = getattr(every_state, job)
    job_id = job_id[0] if isinstance(job_id, list) else job_id

    result = await ctl("retry", job_id)

    assert result.exit_code == 1
    assert "only dead or failed jobs are re-driven" in result.stderr


async def test_retry_dead_dry_run_lists_and_changes_nothing(
    every_state: Jobs, db: asyncpg.Pool
) -> None:
    dry = await ctl_json("retry", "--dead", "--dry-run")

    assert [item["job_id"] for item in dry["redriven"]] == [every_state.dead]
    assert dry["redriven"][0]["new_job_id"] is None
    assert await db.fetchval("SELECT count(*) FROM dead_jobs WHERE redriven_at IS NULL") == 1


async def test_retry_dead_retries_every_pending_one_of_a_function(
    every_state: Jobs, db: asyncpg.Pool, jobs: JobRunner
) -> None:
    none = await ctl_json("retry", "--dead", "--function", "send_confirmation")
    done = await ctl_json("retry", "--dead", "--function", "reserve_inventory")

    assert none["redriven"] == []
    assert [item["new_job_id"] for item in done["redriven"]] == [f"{every_state.dead}:redrive-1"]
    assert await db.fetchval("SELECT count(*) FROM dead_jobs WHERE redriven_at IS NULL") == 0
    assert (await ctl("retry", "--dead")).stdout.count("re-drove 0 job(s)") == 1


async def test_retry_needs_an_id_or_dead(every_state: Jobs) -> None:
    assert (await ctl("retry")).exit_code == 2
    assert (await ctl("retry", every_state.dead, "--dead")).exit_code == 2


async def test_abort_of_a_deferred_job_fails_it_without_running(
    every_state: Jobs, jobs: JobRunner
) -> None:
    result = await ctl_json("abort", every_state.deferred)
    worker = jobs.worker()
    try:
        await worker.main()  # made due at once, so this burst worker takes it and aborts it
    finally:
        await worker.close()

    assert result == {"job_id": "later", "was": "deferred", "abort_requested": True}
    detail = await ctl_json("job", every_state.deferred)
    assert detail["job"]["status"] == "failed"
    assert "CancelledError" in detail["job"]["error"]
    # It never started: the worker counted only the queued job it ran (and the fixture's four).
    last_hour = (await ctl_json("queue"))["queues"][0]["last_hour"]
    assert last_hour == {"complete": 3, "failed": 2}


async def test_abort_refuses_finished_and_unknown_jobs(every_state: Jobs) -> None:
    finished = await ctl("abort", every_state.complete[0])
    unknown = await ctl("abort", "no-such-job")

    assert finished.exit_code == 1
    assert "already finished" in finished.stderr
    assert unknown.exit_code == 1


async def test_an_in_progress_job_is_shown_and_can_be_aborted(
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    jobs: JobRunner,
    db: asyncpg.Pool,
    arq_redis: ArqRedis,
    settings: Settings,
) -> None:
    product = await make_product(stock=10)
    order_id = await place(api, client_key, product.id)
    job_id = f"reserve_inventory:{order_id}"
    async with db.acquire() as conn:
        # Holding the order's row lock keeps the job waiting inside its transaction: running.
        lock = conn.transaction()
        await lock.start()
        await conn.execute("SELECT 1 FROM orders WHERE id = $1 FOR UPDATE", order_id)
        await jobs.relay.deliver_pending()
        worker = jobs.worker(burst=False, poll_delay=0.05)
        running = asyncio.create_task(worker.main())
        try:

            async def started() -> bool:
                return bool(await arq_redis.exists(f"arq:in-progress:{job_id}"))

            await wait_for(started, timeout_s=10)
            queue = await ctl_json("queue")
            listed = await ctl_json("jobs", "--status", "in-progress")
            aborted = await ctl_json("abort", job_id)

            async def finished() -> bool:
                return bool(await arq_redis.exists(f"arq:result:{job_id}"))

            await wait_for(finished, timeout_s=10)
        finally:
            await lock.rollback()
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
            await worker.close()

    assert queue["queues"][0]["in_progress"] == 1
    assert queue["queues"][0]["queued"] == 0
    assert [job["job_id"] for job in listed] == [job_id]
    assert aborted["was"] == "in-progress"
    detail = await ctl_json("job", job_id)
    assert detail["job"]["status"] == "failed"
    assert "CancelledError" in detail["job"]["error"]
    assert await db.fetchval("SELECT status FROM orders WHERE id = $1", order_id) == "pending"
    last_hour = (await ctl_json("queue"))["queues"][0]["last_hour"]
    assert last_hour == {"cancelled": 1}
