"""The console's browser tests: one uvicorn server on the session's app, one headless chromium.

The browser is Debian's (`/usr/bin/chromium`) launched through Playwright's `executable_path`;
Playwright never downloads a browser of its own here. Each test gets a fresh browser context
(cookies, storage) on the shared browser.
"""

import asyncio
import os
import shutil
from collections.abc import AsyncIterator

import asyncpg
import pytest
import uvicorn
from fastapi import FastAPI
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from devstack.services import LOOPBACK, free_port
from shop.clients.service import create_client
from shop.models import ConsoleRole
from tests.ordersctl.fixtures import every_state

__all__ = ["every_state"]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="session")
async def console_url(app: FastAPI) -> AsyncIterator[str]:
    """The session's app served over real HTTP (its lifespan already runs in the fixture)."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host=LOOPBACK, port=port, lifespan="off", log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    yield f"http://{LOOPBACK}:{port}"
    server.should_exit = True
    await task


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            # Chromium's sandbox needs user namespaces that root in a container lacks.
            args=["--no-sandbox"] if os.geteuid() == 0 else [],
        )
        yield launched
        await launched.close()


@pytest.fixture
async def context(browser: Browser, console_url: str) -> AsyncIterator[BrowserContext]:
    made = await browser.new_context(base_url=console_url, viewport=DESKTOP)
    made.set_default_timeout(10_000)
    yield made
    await made.close()


@pytest.fixture
async def page(context: BrowserContext) -> Page:
    return await context.new_page()


async def _admin_key(db: asyncpg.Pool, name: str, role: ConsoleRole) -> str:
    async with db.acquire() as conn:
        return (await create_client(conn, name, is_admin=True, console_role=role)).api_key


@pytest.fixture
async def operator_key(db: asyncpg.Pool) -> str:
    return await _admin_key(db, "on-call", ConsoleRole.OPERATOR)


@pytest.fixture
async def viewer_key(db: asyncpg.Pool) -> str:
    return await _admin_key(db, "support", ConsoleRole.VIEWER)


async def sign_in(page: Page, key: str, path: str = "/console/overview") -> None:
    await page.goto(path)
    await page.get_by_label("Admin API key").fill(key)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_load_state()
