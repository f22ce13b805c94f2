"""Signing in and out of the console, session expiry, and who gets in (console/routes.py)."""

import hashlib
import time

import asyncpg
from arq.connections import ArqRedis
from fastapi import FastAPI
from playwright.async_api import BrowserContext, Page, expect

from api.main import create_app
from console.routes import COOKIE
from console.sessions import SESSION_KEY_PREFIX
from kit.settings import Settings
from tests.app_fixtures import api_with
from tests.console.conftest import sign_in


async def _session_key(context: BrowserContext) -> str:
    [cookie] = [c for c in await context.cookies() if c["name"] == COOKIE]
    return SESSION_KEY_PREFIX + hashlib.sha256(cookie["value"].encode()).hexdigest()


async def test_sign_in_sets_a_strict_http_only_cookie_that_expires_with_its_session(
    context: BrowserContext, page: Page, operator_key: str, arq_redis: ArqRedis, settings: Settings
) -> None:
    await sign_in(page, operator_key, "/console/audit")

    await expect(page.get_by_role("heading", level=1)).to_have_text("Audit log")
    [cookie] = [c for c in await context.cookies() if c["name"] == COOKIE]
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/console"
    # Plain http on a loopback address: the one case the cookie is not Secure.
    assert cookie["secure"] is False
    assert abs(cookie["expires"] - (time.time() + settings.console_session_ttl_s)) < 60
    ttl = await arq_redis.ttl(await _session_key(context))
    assert settings.console_session_ttl_s - 60 < ttl <= settings.console_session_ttl_s
    await expect(page.get_by_role("cell", name="sign-in")).to_be_visible()


async def test_an_expired_session_sends_the_operator_back_to_sign_in(
    context: BrowserContext, page: Page, operator_key: str, arq_redis: ArqRedis
) -> None:
    await sign_in(page, operator_key)
    await arq_redis.delete(await _session_key(context))  # as its TTL does

    await page.goto("/console/jobs")

    await expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    assert "next=%2Fconsole%2Fjobs" in page.url


async def test_sign_out_ends_the_session_on_the_server(
    context: BrowserContext, page: Page, operator_key: str, arq_redis: ArqRedis
) -> None:
    await sign_in(page, operator_key)
    key = await _session_key(context)
    stolen = [c for c in await context.cookies() if c["name"] == COOKIE]

    await page.get_by_role("button", name="Sign out").click()

    await expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    assert await arq_redis.exists(key) == 0
    await context.add_cookies(stolen)  # the old cookie, replayed
    await page.goto("/console/overview")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")


async def test_a_client_key_and_an_unknown_key_get_no_console(
    page: Page, client_key: str, db: asyncpg.Pool
) -> None:
    await sign_in(page, client_key)
    await expect(page.get_by_role("alert")).to_have_text("This key has no console access.")
    refused = await db.fetchrow("SELECT client_name, action, outcome FROM console_audit")

    await sign_in(page, "ord_not-a-key")
    await expect(page.get_by_role("alert")).to_have_text("Unknown or revoked key.")
    await page.goto("/console/overview")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    assert dict(refused) == {"client_name": "shop", "action": "sign-in", "outcome": "refused"}


async def test_a_revoked_key_loses_its_open_session_at_once(
    page: Page, operator_key: str, db: asyncpg.Pool
) -> None:
    await sign_in(page, operator_key)

    await db.execute("UPDATE clients SET revoked_at = now() WHERE name = 'on-call'")
    await page.goto("/console/overview")

    await expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")


async def test_the_console_is_not_routed_when_disabled(settings: Settings) -> None:
    async with api_with(settings, console_enabled=False) as api:
        response = await api.get("/console/sign-in")

    assert response.status_code == 404


def _paths(app: FastAPI) -> list[str]:
    """The app's paths in the order routing tries them (included routers flattened)."""
    found = []
    for route in app.routes:
        included = getattr(route, "original_router", None)
        for inner in included.routes if included is not None else [route]:
            found.append(getattr(inner, "path", ""))
    return found


def test_the_console_adds_no_middleware_and_routes_after_the_api(settings: Settings) -> None:
    mounted = create_app(settings)
    bare = create_app(settings.model_copy(update={"console_enabled": False}))

    paths = _paths(mounted)
    first_console = next(i for i, path in enumerate(paths) if path.startswith("/console"))
    assert all(path.startswith("/console") for path in paths[first_console:])
    assert paths[:first_console] == _paths(bare)
    assert [m.cls for m in mounted.user_middleware] == [m.cls for m in bare.user_middleware]
