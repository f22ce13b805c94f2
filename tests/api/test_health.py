from typing import Any

import httpx


async def test_liveness_needs_nothing_but_the_process(api: httpx.AsyncClient) -> None:
    response = await api.get("/healthz")

    assert response.status_code == 200
    assert response.json()["status"] == "ok"


async def test_ready_when_postgres_and_redis_answer(api: httpx.AsyncClient) -> None:
    response = await api.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"postgres": "ok", "redis": "ok"}}


async def test_not_ready_while_redis_is_down(api: httpx.AsyncClient, redis_service: Any) -> None:
    redis_service.stop()
    try:
        response = await api.get("/readyz")
    finally:
        redis_service.start()

    assert response.status_code == 503
    assert response.json()["checks"]["postgres"] == "ok"
    assert response.json()["checks"]["redis"].startswith("unavailable")
