"""`ordersctl` on the real services, with real ARQ jobs in every state.

The commands run in a thread (each runs its own event loop, as from a shell) through typer's
CliRunner; the jobs are made by real ARQ: enqueued, deferred, run by a burst worker to completion
or failure, buried in the ledger by the real job wrapper, or held running by a row lock.
"""

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from arq.connections import ArqRedis
from click.testing import Result
from typer.testing import CliRunner

from kit.settings import Settings
from ordersctl.main import app as ordersctl
from shop.catalogue.schemas import ProductPublic
from tests.app_fixtures import JobRunner, bearer, wait_for

MakeProduct = Callable[..., Coroutine[Any, Any, ProductPublic]]

WIDE = {"COLUMNS": "250"}


async def ctl(*args: str) -> Result:
    """Runs `ordersctl ARGS` as a shell would, but in-process: in a thread with its own loop."""
    return await asyncio.to_thread(CliRunner().invoke, ordersctl, list(args), env=WIDE)


async def ctl_json(*args: str, code: int = 0) -> Any:
    result = await ctl(*args, "--json")
    assert result.exit_code == code, result.output
    return json.loads(result.stdout)


async def place(api: httpx.AsyncClient, key: str, product_id: int) -> int:
    response = await api.post(
        "/v1/orders",
        json={
            "customer": {"email": "ada@example.com", "name": "Ada Lovelace"},
            "items": [{"product_id": product_id, "quantity": 1}],
        },
        headers=bearer(key),
    )
    assert response.status_code == 201, response.text
    order_id: int = response.json()["id"]
    return order_id


@dataclass(frozen=True)
class Jobs:
    """Ids of real jobs, one or more in each state."""

    confirmed_order: int
    waiting_order: int
    queued: str
    deferred: str
    complete: list[str]
    dead: str
    failed_unrecorded: str


@pytest.fixture
async def every_state(
    api: httpx.AsyncClient,
    client_key: str,
    make_product: MakeProduct,
    jobs: JobRunner,
    arq_redis: ArqRedis,
    settings: Settings,
) -> Jobs:
    product = await make_product(stock=10)
    confirmed = await place(api, client_key, product.id)
    await jobs.run_until_idle()  # reserve_inventory and send_confirmation complete

    # An order that does not exist: the job wrapper buries it in the ledger (dead) and ARQ keeps
    # the failure. A call ARQ cannot even make fails before the wrapper: failed, no ledger row.
    queue = settings.queue_name
    await arq_redis.enqueue_job("reserve_inventory", 999_999, _job_id="reserve_inventory:999999")
    await arq_redis.enqueue_job(
        "send_confirmation", 999_998, customer_email="grace@example.com", _job_id="bad-call"
    )
    worker = jobs.worker()
    try:
        await worker.main()
    finally:
        await worker.close()

    # Left waiting: the outbox row of this order is never relayed; its job is queued by hand.
    waiting = await place(api, client_key, product.id)
    await arq_redis.enqueue_job(
        "reserve_inventory", waiting, _job_id=f"reserve_inventory:{waiting}", _queue_name=queue
    )
    await arq_redis.enqueue_job(
        "send_confirmation", confirmed, _job_id="later", _defer_by=3600, _queue_name=queue
    )
    return Jobs(
        confirmed_order=confirmed,
        waiting_order=waiting,
        queued=f"reserve_inventory:{waiting}",
        deferred="later",
        complete=[f"reserve_inventory:{confirmed}", f"send_confirmation:{confirmed}"],
        dead="reserve_inventory:999999",
        failed_unrecorded="bad-call",
    )


async def test_queue_counts_jobs_by_state_function_and_last_hour_outcome(
    every_state: Jobs,
) -> None:
    report = await ctl_json("queue")

    assert report["status"] == "ok"
    [queue] = report["queues"]
    assert queue["queue"] == "orders:queue"
    assert (queue["queued"], queue["deferred"], queue["in_progress"]) == (1, 1, 0)
    assert 0 <= queue["oldest_due_age_s"] < 30
    assert queue["last_hour"] == {"complete": 2, "failed": 2}
    assert queue["functions"] == {
        "reserve_inventory": {"queued": 1},
        "send_confirmation": {"deferred": 1},
    }
    assert queue["last_hour_by_function"] == {
        "reserve_inventory": {"complete": 1, "failed": 1},
        "send_confirmation": {"complete": 1, "failed": 1},
    }
    table = await ctl("queue")
    assert table.exit_code == 0
    assert "orders:queue" in table.stdout
    assert "reserve_inventory" in table.stdout
    assert "By function" in table.stdout


@pytest.mark.parametrize(
    ("thresholds", "code", "status"),
    [
        (["--warn-depth", "1"], 1, "warning"),
        (["--warn-depth", "1", "--crit-depth", "1"], 2, "critical"),
        (["--warn-failed", "2", "--crit-failed", "5"], 1, "warning"),
        (["--warn-age", "0", "--crit-age", "0"], 2, "critical"),
        (["--warn-failed", "3"], 0, "ok"),
    ],
)
async def test_queue_exit_code_grades_the_thresholds(
    every_state: Jobs, thresholds: list[str], code: int, status: str
) -> None:
    report = await ctl_json("queue", *thresholds, code=code)

    assert report["status"] == status
    table = await ctl("queue", *thresholds)
    assert table.exit_code == code
    assert status in table.stdout


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
    # The failure in ARQ and its row in the ledger.
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


async def test_retry_redrives_a_dead_job_once_under_a_new_id(
    every_state: Jobs, arq_redis: ArqRedis, db: asyncpg.Pool, settings: Settings
) -> None:
    first = await ctl_json("retry", every_state.dead)
    again = await ctl("retry", every_state.dead)

    [redrive] = first["redriven"]
    assert redrive["new_job_id"] == f"{every_state.dead}:redrive-1"
    assert await arq_redis.zscore(settings.queue_name, redrive["new_job_id"]) is not None
    row = await db.fetchrow("SELECT redriven_at, redriven_job_id FROM dead_jobs")
    assert row["redriven_at"] is not None
    assert row["redriven_job_id"] == redrive["new_job_id"]
    assert again.exit_code == 1
    assert "re-driven already" in again.stderr


async def test_retry_of_a_failed_job_records_it_in_the_ledger_first(
    every_state: Jobs, arq_redis: ArqRedis, db: asyncpg.Pool, settings: Settings
) -> None:
    result = await ctl("retry", every_state.failed_unrecorded)

    assert result.exit_code == 0, result.output
    row = await db.fetchrow(
        "SELECT args, kwargs, redriven_job_id FROM dead_jobs WHERE job_id = $1",
        every_state.failed_unrecorded,
    )
    # The ledger keeps the real arguments: the re-driven job needs them.
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


async def test_retry_dead_redrives_every_pending_one_of_a_function(
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


async def test_purge_needs_yes_then_removes_waiting_jobs(
    every_state: Jobs, arq_redis: ArqRedis, settings: Settings
) -> None:
    asked = await ctl_json("purge", "--queue", settings.queue_name, code=1)
    kept = await arq_redis.zcard(settings.queue_name)
    purged = await ctl_json("purge", "--queue", settings.queue_name, "--yes")

    assert asked == {"queue": settings.queue_name, "purged": 0, "would_purge": 2}
    assert kept == 2
    assert purged == {"queue": settings.queue_name, "purged": 2}
    assert await arq_redis.zcard(settings.queue_name) == 0
    assert await arq_redis.exists(f"arq:job:{every_state.queued}") == 0
    # What ARQ finished is history, not queue: purge leaves it.
    assert await arq_redis.exists(f"arq:result:{every_state.complete[0]}") == 1


async def test_outbox_shows_pending_rows_their_age_and_deliveries(every_state: Jobs) -> None:
    stats = await ctl_json("outbox")
    table = await ctl("outbox")

    # The waiting order's row was never relayed; the confirmed order's two were.
    assert stats["pending"] == 1
    assert stats["failing"] == 0
    assert 0 <= stats["oldest_pending_age_s"] < 60
    assert stats["delivered_last_5m"] == 2
    assert stats["delivered_last_1h"] == 2
    assert table.exit_code == 0
    assert "Outbox" in table.stdout


async def test_order_shows_the_timeline_of_states_jobs_and_email(every_state: Jobs) -> None:
    timeline = await ctl_json("order", str(every_state.confirmed_order))
    table = await ctl("order", str(every_state.confirmed_order))

    events = [event["event"] for event in timeline["events"]]
    assert timeline["status"] == "confirmed"
    assert events[0] == "placed"
    for expected in (
        "job written to outbox",
        "job handed to queue",
        "job started",
        "job complete",
        "confirmed",
        "email sent",
    ):
        assert expected in events
    assert [event["at"] for event in timeline["events"]] == sorted(
        event["at"] for event in timeline["events"]
    )
    assert events.index("confirmed") < events.index("email sent")
    assert {job["job_id"] for job in timeline["jobs"]} == set(every_state.complete)
    assert table.exit_code == 0
    assert "email sent" in table.stdout
    assert (await ctl("order", "424242")).exit_code == 1


async def test_health_is_unhealthy_without_workers_and_healthy_when_none_are_required(
    every_state: Jobs,
) -> None:
    unhealthy = await ctl_json("health", code=2)
    healthy = await ctl_json("health", "--min-workers", "0")

    assert unhealthy["healthy"] is False
    assert unhealthy["checks"]["workers"]["ok"] is False
    assert unhealthy["checks"]["postgres"]["ok"] is True
    assert unhealthy["checks"]["redis"]["ok"] is True
    assert healthy["healthy"] is True
    lagging = await ctl_json("health", "--min-workers", "0", "--max-outbox-lag", "0", code=2)
    assert lagging["checks"]["outbox"]["ok"] is False


async def test_health_reports_redis_down_and_queue_says_unknown(
    every_state: Jobs, redis_service: Any
) -> None:
    redis_service.stop()
    try:
        report = await ctl_json("health", "--min-workers", "0", code=2)
        table = await ctl("health", "--min-workers", "0")
        queue = await ctl("queue")
    finally:
        redis_service.start()

    assert report["checks"]["redis"]["ok"] is False
    assert report["checks"]["workers"]["ok"] is False
    assert report["checks"]["postgres"]["ok"] is True
    assert table.exit_code == 2
    assert "UNHEALTHY" in table.stdout
    assert queue.exit_code == 3
    assert "a service is unavailable" in queue.stderr


async def test_health_reports_postgres_down(every_state: Jobs, pg_service: Any) -> None:
    pg_service.stop()
    try:
        report = await ctl_json("health", "--min-workers", "0", code=2)
    finally:
        pg_service.start()

    assert report["checks"]["postgres"] == {
        "ok": False,
        "detail": "unavailable: ServiceUnavailable",
    }
    assert report["checks"]["outbox"]["ok"] is False
    assert report["checks"]["redis"]["ok"] is True


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


async def test_top_draws_the_overview_and_stops_after_its_iterations(every_state: Jobs) -> None:
    result = await ctl("top", "--iterations", "2", "--interval", "0.1")

    assert result.exit_code == 0, result.output
    assert "ordersctl top" in result.stdout
    assert "Workers (0 live)" in result.stdout
    assert every_state.dead in result.stdout


async def test_clients_create_list_revoke_in_json(db: asyncpg.Pool) -> None:
    created = await ctl_json("clients", "create", "shop", "--admin")
    listed = await ctl_json("clients", "list")
    revoked = await ctl_json("clients", "revoke", str(created["id"]))
    again = await ctl_json("clients", "revoke", str(created["id"]), code=1)

    assert created["name"] == "shop"
    assert created["is_admin"] is True
    assert created["api_key"].startswith(created["key_prefix"])
    assert [(row["id"], row["name"], row["revoked_at"]) for row in listed] == [
        (created["id"], "shop", None)
    ]
    assert "key_hash" not in listed[0]
    assert revoked == {"client_id": created["id"], "revoked": True}
    assert again == {"client_id": created["id"], "revoked": False}
    table = await ctl("clients", "list")
    assert "shop" in table.stdout


@pytest.mark.slow
async def test_watch_redraws_until_ctrl_c_one_json_document_per_line(every_state: Jobs) -> None:
    watcher = subprocess.Popen(
        [str(Path(sys.executable).parent / "ordersctl"), "queue", "--json", "--watch", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert watcher.stdout is not None
        rounds = [json.loads(await asyncio.to_thread(watcher.stdout.readline)) for _ in range(2)]
        watcher.send_signal(signal.SIGINT)
        code = await asyncio.to_thread(watcher.wait, 10)
    finally:
        watcher.kill()
        watcher.communicate()

    assert code == 0
    assert [report["queues"][0]["queued"] for report in rounds] == [1, 1]
