"""What the console changes: retry, abort, purge; roles, CSRF and the audit log of each."""

import asyncio

import asyncpg
import httpx
from arq.connections import ArqRedis
from arq.constants import abort_jobs_ss
from playwright.async_api import Page, expect

from kit.settings import Settings
from shop.jobs.dead_jobs import record_dead_job
from tests.app_fixtures import JobRunner, wait_for
from tests.console.conftest import sign_in
from tests.ordersctl.fixtures import Jobs, MakeProduct, place


async def _csrf(page: Page) -> str:
    token = await page.locator("form.who input[name=csrf]").get_attribute("value")
    assert token
    return token


async def _audit(db: asyncpg.Pool) -> list[tuple[str, str, str, str]]:
    rows = await db.fetch(
        "SELECT client_name, action, target, outcome FROM console_audit"
        " WHERE action <> 'sign-in' ORDER BY id"
    )
    return [tuple(row) for row in rows]


async def _redriven(db: asyncpg.Pool, job_id: str) -> str | None:
    found: str | None = await db.fetchval(
        "SELECT redriven_job_id FROM dead_jobs WHERE job_id = $1", job_id
    )
    return found


async def test_retry_by_keyboard_redrives_the_dead_job_and_the_audit_log_shows_it(
    page: Page, every_state: Jobs, operator_key: str, db: asyncpg.Pool, arq_redis: ArqRedis,
    settings: Settings,
) -> None:  # fmt: skip
    await sign_in(page, operator_key, f"/console/job/{every_state.dead}")
    retry = page.get_by_role("button", name="Retry")
    for _ in range(40):  # Tab through the page until the button has the focus
        await page.keyboard.press("Tab")
        if await retry.evaluate("button => button === document.activeElement"):
            break
    await page.keyboard.press("Enter")

    await expect(page.get_by_role("status")).to_contain_text("Retried 1 job(s)")
    new_job_id = await _redriven(db, every_state.dead)
    assert new_job_id is not None
    assert await arq_redis.zscore(settings.queue_name, new_job_id) is not None
    assert await _audit(db) == [("on-call", "retry", every_state.dead, "ok")]
    await page.goto("/console/audit")
    row = page.get_by_role("row").filter(has_text="retry")
    await expect(row).to_contain_text(every_state.dead)
    await expect(row).to_contain_text("ok")


async def test_retry_a_selection_then_all_that_match_after_a_dry_run_count(
    page: Page, every_state: Jobs, operator_key: str, db: asyncpg.Pool, jobs: JobRunner
) -> None:
    # Two more deaths, recorded as the job wrapper records them (a burst worker would wait for
    # the deferred job of every_state).
    for order_id in (999_997, 999_996):
        await record_dead_job(
            jobs.context.pool,
            jobs.settings,
            job_id=f"reserve_inventory:{order_id}",
            function="reserve_inventory",
            args=[order_id],
            kwargs={},
            error=f"PermanentJobError('order {order_id} does not exist')",
            traceback=None,
            tries=1,
            enqueued_at=None,
        )
    await sign_in(page, operator_key, "/console/dead")

    await page.get_by_label("select reserve_inventory:999997").check()
    await page.get_by_role("button", name="Retry selected").click()
    await expect(page.get_by_role("status")).to_contain_text("Retried 1 job(s)")
    await page.get_by_role("link", name="Retry all that match…").click()
    await expect(page.get_by_text("Dry run")).to_contain_text("2 dead job(s)")
    await page.get_by_role("button", name="Retry 2 job(s)").click()

    await expect(page.get_by_role("status")).to_contain_text("Retried 2 dead job(s)")
    for job_id in ("reserve_inventory:999997", "reserve_inventory:999996", every_state.dead):
        assert await _redriven(db, job_id) is not None
    assert [(action, outcome) for _, action, _, outcome in await _audit(db)] == [
        ("retry", "ok"),
        ("retry-all", "ok"),
    ]


async def test_abort_asks_the_workers_to_cancel_a_queued_job(
    page: Page, every_state: Jobs, operator_key: str, db: asyncpg.Pool, arq_redis: ArqRedis
) -> None:
    await sign_in(page, operator_key, f"/console/job/{every_state.queued}")

    await page.get_by_role("button", name="Abort").click()

    await expect(page.get_by_role("status")).to_contain_text("Abort requested")
    assert await arq_redis.zscore(abort_jobs_ss, every_state.queued) is not None
    assert await _audit(db) == [("on-call", "abort", every_state.queued, "ok")]


async def test_purge_needs_the_queue_s_name_typed_before_it_removes_waiting_jobs(
    page: Page, every_state: Jobs, operator_key: str, db: asyncpg.Pool, arq_redis: ArqRedis,
    settings: Settings,
) -> None:  # fmt: skip
    queue = settings.queue_name
    await sign_in(page, operator_key, "/console/overview")
    await page.get_by_role("link", name="Purge…").click()
    await expect(page.get_by_text("would be removed")).to_contain_text("2 waiting job(s)")

    await page.get_by_label("Type").fill("orders")
    await page.get_by_role("button", name="Purge").click()
    await expect(page.get_by_role("status")).to_contain_text("Type the queue's name")
    assert await arq_redis.zcard(queue) == 2
    await page.goto(f"/console/purge?queue_name={queue}")
    await page.get_by_label("Type").fill(queue)
    await page.get_by_role("button", name="Purge").click()

    await expect(page.get_by_role("status")).to_contain_text("Purged 2 waiting job(s)")
    assert await arq_redis.zcard(queue) == 0
    assert [(action, outcome) for _, action, _, outcome in await _audit(db)] == [
        ("purge", "failed"),
        ("purge", "ok"),
    ]


async def test_a_viewer_sees_no_actions_and_its_posts_are_refused(
    page: Page, every_state: Jobs, viewer_key: str, db: asyncpg.Pool
) -> None:
    await sign_in(page, viewer_key, f"/console/job/{every_state.dead}")
    await expect(page.get_by_role("heading", level=1)).to_contain_text(every_state.dead)
    await expect(page.get_by_role("button", name="Retry")).to_have_count(0)
    await page.goto("/console/dead")
    await expect(page.get_by_role("button", name="Retry selected")).to_have_count(0)
    await page.goto("/console/overview")
    await expect(page.get_by_role("link", name="Purge…")).to_have_count(0)

    response = await page.request.post(
        "/console/actions/retry",
        form={"csrf": await _csrf(page), "job_id": every_state.dead},
        max_redirects=0,
    )

    assert response.status == 403
    assert await _redriven(db, every_state.dead) is None
    assert await _audit(db) == [("support", "retry", every_state.dead, "refused")]


async def test_a_post_without_the_session_s_csrf_token_is_refused(
    page: Page, every_state: Jobs, operator_key: str, db: asyncpg.Pool, arq_redis: ArqRedis,
    settings: Settings,
) -> None:  # fmt: skip
    await sign_in(page, operator_key)

    forged = await page.request.post(
        "/console/actions/purge",
        form={"csrf": "guessed", "queue": settings.queue_name, "confirm": settings.queue_name},
        max_redirects=0,
    )
    missing = await page.request.post(
        "/console/actions/retry", form={"job_id": every_state.dead}, max_redirects=0
    )

    assert (forged.status, missing.status) == (403, 403)
    assert await arq_redis.zcard(settings.queue_name) == 2
    assert await _redriven(db, every_state.dead) is None
    assert [(action, outcome) for _, action, _, outcome in await _audit(db)] == [
        ("purge", "refused"),
        ("retry", "refused"),
    ]


async def test_a_running_job_is_shown_in_progress_and_aborted_from_its_page(
    page: Page, api: httpx.AsyncClient, client_key: str, make_product: MakeProduct,
    jobs: JobRunner, db: asyncpg.Pool, arq_redis: ArqRedis, operator_key: str,
) -> None:  # fmt: skip
    product = await make_product(stock=10)
    order_id = await place(api, client_key, product.id)
    job_id = f"reserve_inventory:{order_id}"
    await sign_in(page, operator_key, "/console/jobs?status=in-progress")
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
            await page.reload()
            listed = await page.locator("#job-list").inner_text()
            await page.get_by_role("link", name=job_id).click()
            await page.get_by_role("button", name="Abort").click()
            await expect(page.get_by_role("status")).to_contain_text("was in-progress")

            async def finished() -> bool:
                return bool(await arq_redis.exists(f"arq:result:{job_id}"))

            await wait_for(finished, timeout_s=10)
        finally:
            await lock.rollback()
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
            await worker.close()

    assert job_id in listed
    assert "in-progress" in listed
    await page.goto(f"/console/job/{job_id}")
    await expect(page.locator("#job")).to_contain_text("CancelledError")
    assert await _audit(db) == [("on-call", "abort", job_id, "ok")]
