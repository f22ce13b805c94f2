"""The pure ASGI request layer: timing header, request ids, slow-request log."""

from collections.abc import AsyncIterator

import httpx
import pytest
from structlog.testing import capture_logs

from api.main import create_app
from kit.settings import Settings


@pytest.fixture
async def impatient_api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An app that calls every request slow."""
    app = create_app(settings.model_copy(update={"slow_request_s": 1e-9}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


async def test_slow_requests_are_logged_with_route_status_and_duration(
    impatient_api: httpx.AsyncClient,
) -> None:
    with capture_logs() as logs:
        response = await impatient_api.get("/healthz", headers={"X-Request-ID": "slow-1"})

    slow = [entry for entry in logs if entry["event"] == "slow_request"]
    assert response.status_code == 200
    assert len(slow) == 1
    assert slow[0]["method"] == "GET"
    assert slow[0]["path"] == "/healthz"
    assert slow[0]["status"] == 200
    assert slow[0]["duration_s"] > 0


async def test_fast_requests_are_not_logged(api: httpx.AsyncClient) -> None:
    with capture_logs() as logs:
        response = await api.get("/healthz")

    assert response.status_code == 200
    assert [entry for entry in logs if entry["event"] == "slow_request"] == []


async def test_a_request_id_is_made_when_none_or_a_malformed_one_is_sent(
    api: httpx.AsyncClient,
) -> None:
    plain = await api.get("/healthz")
    malformed = await api.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})

    assert len(plain.headers["x-request-id"]) == 16
    assert malformed.headers["x-request-id"] != "bad id\twith spaces"
    assert len(malformed.headers["x-request-id"]) == 16
