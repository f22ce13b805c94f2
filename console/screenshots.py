"""`python -m console.screenshots [--out docs/console]`: the console's pages as PNG, on a stack it
seeds itself.

Starts a throwaway Postgres, Redis and mail sink on free loopback ports, migrates, places orders
through the API and runs them through the real relay and a burst worker (some complete, two die,
two wait in the outbox, one is queued and one deferred), retries one dead job from the console,
then photographs every page with Debian's chromium at 1280 px, and the overview at 390 px.
Everything it started is stopped before it exits.
"""

import argparse
import asyncio
import os
import shutil
import tempfile
from pathlib import Path

import httpx
import uvicorn
from arq import Worker
from arq.connections import RedisSettings
from playwright.async_api import Page, async_playwright

from api.main import create_app
from devstack.mailsink import MailSink
from devstack.project import REPO_ROOT, alembic_upgrade_head
from devstack.services import LOOPBACK, PostgresService, RedisService, ensure_binaries, free_port
from kit.db import connection
from kit.redis import create_queue_client
from kit.settings import Settings, get_settings
from shop.catalogue import repository as products_repo
from shop.catalogue.schemas import ProductCreate
from shop.clients.service import create_client
from shop.jobs.relay import OutboxRelay
from shop.models import ConsoleRole
from worker.monitor import WorkerMonitor
from worker.settings import WorkerSettings, create_worker_context

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _order(product_id: int, n: int) -> dict[str, object]:
    return {
        "customer": {"email": f"customer{n}@example.com", "name": f"Customer {n}"},
        "items": [{"product_id": product_id, "quantity": 1}],
    }


async def _seed(settings: Settings, api_url: str) -> tuple[str, int, str]:
    """(an operator's key, an order that went through, a dead job's id)."""
    context = await create_worker_context(settings)
    queue = create_queue_client(settings)
    try:
        async with connection(context.pool, settings.db_pool_acquire_timeout_s) as conn:
            shop_key = (await create_client(conn, "storefront", is_admin=False)).api_key
            operator_key = (
                await create_client(
                    conn, "on-call", is_admin=True, console_role=ConsoleRole.OPERATOR
                )
            ).api_key
            product = await products_repo.insert(
                conn,
                ProductCreate(sku="MUG-1", name="Mug", price_cents=1200, currency="EUR", stock=100),
            )
        assert product is not None
        headers = {"Authorization": f"Bearer {shop_key}"}
        async with httpx.AsyncClient(base_url=api_url, headers=headers) as api:
            placed = [
                (await api.post("/v1/orders", json=_order(product.id, n))).json()["id"]
                for n in range(8)
            ]
            relay = OutboxRelay(context.pool, queue, settings)
            monitor = WorkerMonitor(queue, settings)
            for order_id in (999_001, 999_002):  # orders that do not exist: their jobs die
                await queue.enqueue_job(
                    "reserve_inventory", order_id, _job_id=f"reserve_inventory:{order_id}"
                )
            for _ in range(5):
                if not await relay.deliver_pending():
                    break
                worker = Worker(
                    functions=WorkerSettings.functions,
                    queue_name=settings.queue_name,
                    redis_settings=RedisSettings.from_dsn(settings.redis_url.get_secret_value()),
                    burst=True,
                    poll_delay=0,
                    handle_signals=False,
                    ctx={"settings": settings, "worker": context, "monitor": monitor},
                    keep_result=WorkerSettings.keep_result,
                    allow_abort_jobs=True,
                )
                try:
                    await worker.main()
                finally:
                    await worker.close()
            # A storefront's webhook endpoint: the two orders below make its first deliveries.
            hook = {"url": "http://127.0.0.1:9/orders-hook", "events": ["order.created"]}
            (await api.post("/v1/webhook-endpoints", json=hook)).raise_for_status()
            # Left waiting: two orders in the outbox (no worker runs now), a queued and a
            # deferred job.
            for n in (8, 9):
                await api.post("/v1/orders", json=_order(product.id, n))
        await queue.enqueue_job("reserve_inventory", 999_003, _job_id="reserve_inventory:999003")
        await queue.enqueue_job("send_confirmation", placed[0], _job_id="later", _defer_by=3600)
        return operator_key, placed[0], "reserve_inventory:999001"
    finally:
        await queue.aclose()
        await context.mailer.close()
        await context.webhooks.close()
        await context.redis.aclose()
        await context.pool.close()


async def _shoot(page: Page, path: str, out: Path, name: str) -> None:
    await page.goto(path)
    await page.wait_for_load_state("networkidle")
    await page.screenshot(path=str(out / f"{name}.png"), full_page=True)
    print(f"console.screenshots: {out / f'{name}.png'}", flush=True)


async def _photograph(settings: Settings, out: Path) -> None:
    app = create_app(settings)
    port = free_port()
    url = f"http://{LOOPBACK}:{port}"
    async with app.router.lifespan_context(app):
        server = uvicorn.Server(
            uvicorn.Config(app, host=LOOPBACK, port=port, lifespan="off", log_level="warning")
        )
        serving = asyncio.create_task(server.serve())
        try:
            while not server.started:  # noqa: ASYNC110 - uvicorn offers no event
                await asyncio.sleep(0.02)
            key, order_id, dead_job = await _seed(settings, url)
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(
                    executable_path=CHROMIUM,
                    headless=True,
                    args=["--no-sandbox"] if os.geteuid() == 0 else [],
                )
                context = await browser.new_context(
                    base_url=url, viewport={"width": 1280, "height": 800}
                )
                page = await context.new_page()
                await _shoot(page, "/console/sign-in", out, "sign-in")
                await page.get_by_label("Admin API key").fill(key)
                await page.get_by_role("button", name="Sign in").click()
                await page.wait_for_load_state()
                await page.goto("/console/job/reserve_inventory:999002")
                await page.get_by_role("button", name="Retry").click()
                await page.wait_for_load_state()
                for path, name in [
                    ("/console/overview", "overview"),
                    ("/console/jobs", "jobs"),
                    (f"/console/job/{dead_job}", "job"),
                    ("/console/dead", "dead-jobs"),
                    ("/console/dead/retry-all", "retry-all"),
                    (f"/console/purge?queue_name={settings.queue_name}", "purge"),
                    (f"/console/orders/{order_id}", "order"),
                    ("/console/webhooks", "webhooks"),
                    ("/console/audit", "audit"),
                ]:
                    await _shoot(page, path, out, name)
                await page.set_viewport_size({"width": 390, "height": 844})
                await _shoot(page, "/console/overview", out, "overview-phone")
                await _shoot(page, "/console/dead", out, "dead-jobs-phone")
                await browser.close()
        finally:
            server.should_exit = True
            await serving


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "console")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    ensure_binaries()
    root = Path(tempfile.mkdtemp(prefix="console-screenshots-"))
    root.chmod(0o711)  # Postgres, run as another user when we are root, must enter it
    postgres = PostgresService(root / "postgres", free_port(), fsync=False)
    redis = RedisService(root / "redis", free_port())
    mail = MailSink(root / "mail", free_port())
    started: list[PostgresService | RedisService | MailSink] = []
    try:
        for service in (postgres, redis, mail):
            started.append(service)
            service.start()
        os.environ.update(
            DATABASE_URL=postgres.url,
            REDIS_URL=redis.url,
            SMTP_URL=mail.url,
            LOG_LEVEL="WARNING",
            # The demo endpoint is on loopback.
            WEBHOOK_ALLOW_PRIVATE_NETWORKS="true",
        )
        get_settings.cache_clear()
        alembic_upgrade_head(os.environ, capture=True)
        asyncio.run(_photograph(get_settings(), args.out))
    finally:
        for service in reversed(started):
            service.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
