"""The per-key rate limit: 429 problem+json with Retry-After, one bucket per API key."""

from typing import Any

import httpx

from tests.app_fixtures import bearer


async def test_a_key_over_its_rate_gets_429_with_retry_after(
    limited_api: httpx.AsyncClient, client_key: str, other_client_key: str
) -> None:
    admitted = [await limited_api.get("/v1/orders", headers=bearer(client_key)) for _ in range(3)]
    refused = await limited_api.get("/v1/products", headers=bearer(client_key))
    other = await limited_api.get("/v1/orders", headers=bearer(other_client_key))

    assert [response.status_code for response in admitted] == [200, 200, 200]
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["status"] == 429
    # One request per 5 s: the next one fits in 5 s, rounded up to whole seconds.
    assert refused.headers["retry-after"] == "5"
    assert other.status_code == 200


async def test_health_checks_are_not_limited(
    limited_api: httpx.AsyncClient, client_key: str
) -> None:
    for _ in range(4):
        await limited_api.get("/v1/orders", headers=bearer(client_key))

    assert (await limited_api.get("/healthz")).status_code == 200
    assert (await limited_api.get("/readyz")).status_code == 200


async def test_the_limit_needs_no_redis(
    limited_api: httpx.AsyncClient, client_key: str, redis_service: Any
) -> None:
    redis_service.stop()
    try:
        statuses = [
            (await limited_api.get("/v1/orders", headers=bearer(client_key))).status_code
            for _ in range(4)
        ]
    finally:
        redis_service.start()

    assert statuses == [200, 200, 200, 429]
