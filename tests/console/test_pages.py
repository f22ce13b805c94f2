"""Every console page in a real browser, on real jobs in every state (console/routes.py)."""

import re

from arq.connections import ArqRedis
from playwright.async_api import BrowserContext, Page, expect

from kit.settings import Settings
from tests.console.conftest import PHONE, sign_in
from tests.ordersctl.fixtures import Jobs

PAGES = [
    ("/console/overview", "Overview"),
    ("/console/jobs", "Jobs"),
    ("/console/dead", "Dead jobs"),
    ("/console/webhooks", "Webhook deliveries"),
    ("/console/audit", "Audit log"),
]


async def test_every_page_shows_the_jobs_in_each_state_without_personal_data(
    page: Page, every_state: Jobs, operator_key: str
) -> None:
    errors: list[str] = []  # a CSP violation or a script error shows up as one
    page.on(
        "console", lambda message: errors.append(message.text) if message.type == "error" else None
    )
    await sign_in(page, operator_key)
    seen: dict[str, str] = {}
    for path, heading in PAGES:
        await page.goto(path)
        await expect(page.get_by_role("heading", level=1)).to_have_text(heading)
        seen[path] = await page.content()
    for status in ("queued", "deferred", "complete", "failed", "dead"):
        await page.goto(f"/console/jobs?status={status}")
        seen[status] = await page.locator("#job-list").inner_text()
    await page.goto(f"/console/job/{every_state.dead}")
    seen["job"] = await page.content()
    await page.goto(f"/console/orders/{every_state.confirmed_order}")
    seen["order"] = await page.content()

    assert every_state.queued in seen["queued"]
    assert every_state.deferred in seen["deferred"]
    assert all(job_id in seen["complete"] for job_id in every_state.complete)
    assert every_state.failed_unrecorded in seen["failed"]
    assert every_state.dead in seen["dead"]
    assert "Traceback" in seen["job"]
    assert "email sent" in seen["order"]
    assert "reserve_inventory" in seen["/console/overview"]
    # The waiting order's outbox row, never relayed (no worker runs), beside the queue.
    outbox_cell = page.locator("#queues tbody tr").first.locator("td").nth(4)
    await page.goto("/console/overview")
    await expect(outbox_cell).to_have_text("1")
    await expect(page.locator("svg.chart")).to_have_count(2)
    # The orders' customer (ada@, grace@ in a job's kwargs) is what ordersctl redacts.
    for html in seen.values():
        assert "@example.com" not in html
        assert "Ada Lovelace" not in html
    assert errors == []


async def test_a_page_refreshes_its_live_regions_while_it_is_open(
    page: Page, every_state: Jobs, operator_key: str, arq_redis: ArqRedis, settings: Settings
) -> None:
    await sign_in(page, operator_key)
    queued = page.locator("#queues tbody tr").first.locator("td").first
    await expect(queued).to_have_text("1")

    await arq_redis.enqueue_job("reserve_inventory", 424242, _job_id="reserve_inventory:424242")

    await expect(queued).to_have_text("2", timeout=12_000)


async def test_pages_are_usable_at_a_phone_s_width(
    context: BrowserContext, every_state: Jobs, operator_key: str
) -> None:
    page = await context.new_page()
    await page.set_viewport_size(PHONE)
    await sign_in(page, operator_key)
    for path, _ in PAGES:
        await page.goto(path)
        # Wide tables scroll in their own box; the page itself never scrolls sideways.
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], path
    await expect(page.get_by_role("link", name="Dead jobs")).to_be_visible()


async def test_assets_have_content_hashed_names_and_are_cached_for_a_year(
    page: Page, operator_key: str
) -> None:
    await sign_in(page, operator_key)
    css = await page.locator("link[rel=stylesheet]").get_attribute("href")
    script = await page.locator("script[src]").get_attribute("src")

    for url in (css, script):
        assert url is not None
        assert re.fullmatch(r"/console/static/console\.[0-9a-f]{12}\.(css|js)", url)
        response = await page.request.get(url)
        assert response.ok
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    missing = await page.request.get("/console/static/console.000000000000.css")
    assert missing.status == 404
