"""`ordersctl queue` and `ordersctl purge` (ordersctl/commands/queue.py)."""

import httpx
import pytest
from arq.connections import ArqRedis

from kit.settings import Settings
from tests.app_fixtures import JobRunner
from tests.ordersctl.fixtures import Jobs, MakeProduct, ctl, ctl_json, place


async def test_queue_counts_jobs_by_state_function_and_last_hour_outcome(
    every_state: Jobs,
) -> None:
    report = await ctl_json("queue")

    assert report["status"] == "ok"
    [queue] = report["queues"]
    assert queue["queue"] == "orders:queue"
    assert (queue["queued"], queue["deferred"], queue["in_progress"]) == (1, 1, 0)
    assert 0 <= queue["oldest_due_age_s"] < 30
    assert queue["outbox_pending"] == 1  # the waiting order's row, never relayed
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


async def test_with_every_worker_down_queue_shows_the_orders_waiting_in_the_outbox(
    api: httpx.AsyncClient, client_key: str, make_product: MakeProduct, jobs: JobRunner
) -> None:
    product = await make_product(stock=10)
    for _ in range(3):
        await place(api, client_key, product.id)  # no worker runs: the relay never hands them over

    report = await ctl_json("queue")
    graded = await ctl_json("queue", "--warn-age", "0", "--crit-age", "0", code=2)

    [queue] = report["queues"]
    assert (queue["queued"], queue["outbox_pending"]) == (0, 3)
    assert queue["outbox_oldest_pending_age_s"] >= 0
    assert graded["queues"][0]["breaches"] == {"outbox_age": "critical"}
    table = await ctl("queue")
    assert "outbox" in table.stdout
    await jobs.run_until_idle()
    [drained] = (await ctl_json("queue"))["queues"]
    assert drained["outbox_pending"] == 0


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
