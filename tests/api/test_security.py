"""Security: keys hashed and revocable, admin-only writes, no client data in shared caches,
no secrets in logs, input never becomes SQL."""

import asyncio
import hashlib
import secrets
import signal
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from typer.testing import CliRunner

from devstack.services import LOOPBACK, free_port
from kit.settings import Settings
from ordersctl.main import app as ordersctl
from shop.catalogue.schemas import ProductPublic
from tests.api.test_orders import count_rows, order_body
from tests.app_fixtures import api_with, bearer, wait_for
from tests.processes import ApiProcess, Server

MakeProduct = Callable[..., Coroutine[Any, Any, ProductPublic]]


async def client_id_of(db: asyncpg.Pool, name: str) -> int:
    client_id: int = await db.fetchval("SELECT id FROM clients WHERE name = $1", name)
    return client_id


async def ordersctl_run(*args: str) -> str:
    # ordersctl runs its own event loop, so it gets a thread of its own.
    result = await asyncio.to_thread(CliRunner().invoke, ordersctl, list(args))
    assert result.exit_code == 0, result.output
    return result.output


async def test_keys_are_stored_only_as_hashes(client_key: str, db: asyncpg.Pool) -> None:
    row = await db.fetchrow("SELECT * FROM clients WHERE name = 'shop'")

    assert row["key_hash"] == hashlib.sha256(client_key.encode()).digest()
    stored = " ".join(str(value) for value in row.values())
    assert client_key not in stored
    assert client_key[-20:] not in stored


async def test_a_revoked_key_is_refused_once_the_auth_cache_ttl_has_passed(
    settings: Settings, client_key: str, other_client_key: str, db: asyncpg.Pool
) -> None:
    async with api_with(settings, auth_cache_ttl_s=0) as api:
        before = await api.get("/v1/orders", headers=bearer(client_key))
        await ordersctl_run("clients", "revoke", str(await client_id_of(db, "shop")))
        after = await api.get("/v1/orders", headers=bearer(client_key))
        other = await api.get("/v1/orders", headers=bearer(other_client_key))

    assert before.status_code == 200
    assert after.status_code == 401
    assert after.headers["content-type"] == "application/problem+json"
    assert after.headers["www-authenticate"] == "Bearer"
    assert other.status_code == 200


async def test_a_revoked_key_works_no_longer_than_the_auth_cache_ttl(
    settings: Settings, client_key: str, db: asyncpg.Pool
) -> None:
    # The price of keeping Postgres off the hot path: revocation takes up to AUTH_CACHE_TTL_S.
    async with api_with(settings, auth_cache_ttl_s=3600) as api:
        await api.get("/v1/orders", headers=bearer(client_key))
        await ordersctl_run("clients", "revoke", str(await client_id_of(db, "shop")))
        within_ttl = await api.get("/v1/orders", headers=bearer(client_key))
    async with api_with(settings, auth_cache_ttl_s=3600) as fresh_process:
        elsewhere = await fresh_process.get("/v1/orders", headers=bearer(client_key))

    assert within_ttl.status_code == 200
    assert elsewhere.status_code == 401


async def test_admin_operations_need_an_admin_key(
    api: httpx.AsyncClient, client_key: str, admin_key: str, make_product: MakeProduct
) -> None:
    product = await make_product()
    new = {"sku": "ADM-1", "name": "Admin only", "price_cents": 100}

    as_client = [
        await api.post("/v1/products", json=new, headers=bearer(client_key)),
        await api.patch(
            f"/v1/products/{product.id}", json={"stock": 0}, headers=bearer(client_key)
        ),
    ]
    anonymous = await api.post("/v1/products", json=new)
    as_admin = await api.post("/v1/products", json=new, headers=bearer(admin_key))

    assert [response.status_code for response in as_client] == [403, 403]
    assert anonymous.status_code == 401
    assert as_admin.status_code == 201


async def test_the_catalogue_cache_holds_nothing_client_specific(
    app: FastAPI,
    api: httpx.AsyncClient,
    client_key: str,
    other_client_key: str,
    make_product: MakeProduct,
    settings: Settings,
    db: asyncpg.Pool,
) -> None:
    products = [await make_product() for _ in range(2)]
    for key in (client_key, other_client_key):
        await api.post(
            "/v1/orders",
            json=order_body((products[0].id, 1), email="private@example.com"),
            headers={**bearer(key), "Idempotency-Key": "private-key"},
        )
        for product in products:
            await api.get(f"/v1/products/{product.id}", headers=bearer(key))
        await api.get("/v1/products", headers=bearer(key))
    mine = await api.get(f"/v1/products/{products[0].id}", headers=bearer(client_key))
    theirs = await api.get(f"/v1/products/{products[0].id}", headers=bearer(other_client_key))

    redis = Redis.from_url(settings.redis_url.get_secret_value())
    try:
        cached = {key: await redis.get(key) for key in await redis.keys("*")}
    finally:
        await redis.aclose()
    # The cluster rate limit's keys: a client's id and one timestamp, no secret.
    limits = {key: cached.pop(key) for key in list(cached) if key.startswith(b"ratelimit:")}
    clients = await db.fetch("SELECT id, name, key_hash FROM clients")
    secrets_and_client_data = [
        client_key,
        other_client_key,
        "private@example.com",
        "private-key",
        "Ada Lovelace",
        *(row["name"] for row in clients),
        *(row["key_hash"].hex() for row in clients),
    ]

    # The in-process tier in front of Redis, too.
    cache = app.state.orders.cache
    for entries in (cache._local, cache._local_pages):
        cached.update({key.encode(): entry[-1] for key, entry in entries.items()})

    assert cached, "the reads above should have filled the cache"
    assert all(key.startswith(b"catalogue:") for key in cached)
    assert all(value is not None and value.isdigit() for value in limits.values())
    blob = b" ".join(key + b" " + (value or b"") for key, value in cached.items())
    for value in secrets_and_client_data:
        assert value.encode() not in blob
    assert b"client" not in blob
    assert b"order" not in blob
    # What one client reads is byte for byte what another reads.
    assert mine.content == theirs.content


@pytest.mark.parametrize(
    "hostile",
    [
        "Robert'); DROP TABLE orders; --",
        "' OR '1'='1",
        "$1",
        "\\'; SELECT pg_sleep(10); --",
    ],
)
async def test_input_is_data_never_sql(
    hostile: str,
    api: httpx.AsyncClient,
    client_key: str,
    admin_key: str,
    make_product: MakeProduct,
    db: asyncpg.Pool,
) -> None:
    product = await make_product()
    body = order_body((product.id, 1))
    body["customer"]["name"] = hostile

    placed = await api.post("/v1/orders", json=body, headers={**bearer(client_key)})
    patched = await api.patch(
        f"/v1/products/{product.id}", json={"name": hostile}, headers=bearer(admin_key)
    )
    listed = await api.get(
        "/v1/orders", params={"status": hostile, "cursor": hostile}, headers=bearer(client_key)
    )

    assert placed.status_code == 201
    assert placed.json()["customer"]["name"] == hostile
    assert patched.json()["name"] == hostile
    assert listed.status_code == 422
    assert await db.fetchval("SELECT customer_name FROM orders") == hostile
    assert (await count_rows(db))["orders"] == 1


async def wait_until_serving(server: ApiProcess) -> None:
    # Not /readyz: this server's Redis refuses it on purpose.
    async def serving() -> bool:
        assert server.process is not None
        assert server.process.poll() is None, server.output()
        try:
            async with httpx.AsyncClient(base_url=server.url, timeout=1) as client:
                return (await client.get("/healthz")).status_code == 200
        except httpx.TransportError:
            return False

    await wait_for(serving, timeout_s=30)


@pytest.mark.slow
@pytest.mark.parametrize("server", Server)
async def test_no_secret_or_full_api_key_reaches_the_logs(
    server: Server, client_key: str, make_product: MakeProduct, pg_service: Any, redis_service: Any
) -> None:
    product = await make_product()
    db_password = "pg-" + secrets.token_hex(12)
    redis_password = "redis-" + secrets.token_hex(12)
    unknown_key = "ord_" + secrets.token_urlsafe(32)
    # Unknown keys are cached like known ones; one never tried before has to reach Postgres.
    uncached_key = "ord_" + secrets.token_urlsafe(32)
    # The test Postgres trusts loopback, so any password gets in. A Redis that asks for no
    # password refuses one: every cache call fails and is logged, with the URL at hand.
    api = ApiProcess(
        server=server,
        env={
            "DATABASE_URL": pg_service.url.replace(":orders@", f":{db_password}@"),
            "REDIS_URL": f"redis://:{redis_password}@{LOOPBACK}:{redis_service.port}/0",
            "SMTP_URL": f"smtp://user:smtp-secret@{LOOPBACK}:{free_port()}",
            "LOG_LEVEL": "DEBUG",
            # Granian's own log at its most verbose too.
            "GRANIAN_LOG_LEVEL": "debug",
            # Every request is "slow", so every request is logged.
            "SLOW_REQUEST_S": "0.000001",
        },
    )
    try:
        api.start()
        await wait_until_serving(api)
        async with httpx.AsyncClient(base_url=api.url, timeout=10) as client:
            statuses = [
                (
                    await client.get(f"/v1/products/{product.id}", headers=bearer(client_key))
                ).status_code,
                (
                    await client.post(
                        "/v1/orders",
                        json=order_body((product.id, 1)),
                        headers={**bearer(client_key), "Idempotency-Key": "log-test"},
                    )
                ).status_code,
                (await client.get("/v1/orders", headers=bearer(unknown_key))).status_code,
                (await client.get("/v1/orders", headers={"Authorization": client_key})).status_code,
            ]
            pg_service.stop()
            try:
                unavailable = await client.get("/v1/orders", headers=bearer(uncached_key))
            finally:
                pg_service.start()
        api.signal(signal.SIGTERM)
        api.wait(15)
        logs = api.output()
    finally:
        api.close()

    assert statuses == [200, 201, 401, 401]
    assert unavailable.status_code == 503
    # The logs are there, and they are about these requests...
    assert "slow_request" in logs
    assert "cache_unavailable" in logs
    assert "database_unavailable" in logs
    # ...but hold none of the secrets that were at hand.
    secrets_at_hand = (
        db_password,
        redis_password,
        "smtp-secret",
        client_key,
        unknown_key,
        uncached_key,
    )
    for secret in secrets_at_hand:
        assert secret not in logs
    assert client_key[len("ord_") :] not in logs
