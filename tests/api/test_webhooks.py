"""The webhook endpoints' HTTP contract: registering, listing, rotating, deleting, and who sees
what. Deliveries themselves: tests/shop/webhooks/test_delivery.py."""

import base64
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from kit.settings import Settings
from tests.app_fixtures import api_with, bearer

RECEIVER = "http://127.0.0.1:9/hooks"


@pytest.fixture
async def dev_api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An app that allows plain http and loopback URLs, as `make run` does."""
    async with api_with(settings, webhook_allow_private_networks=True) as client:
        yield client


async def register(
    api: httpx.AsyncClient, key: str, url: str = RECEIVER, events: list[str] | None = None
) -> httpx.Response:
    return await api.post(
        "/v1/webhook-endpoints",
        json={"url": url, "events": events or ["order.confirmed"]},
        headers=bearer(key),
    )


async def test_registering_an_endpoint_answers_its_secret_once(
    dev_api: httpx.AsyncClient, client_key: str
) -> None:
    response = await register(dev_api, client_key, events=["order.created", "order.confirmed"])

    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"id", "url", "events", "secret", "created_at"}
    assert body["url"] == RECEIVER
    assert body["events"] == ["order.created", "order.confirmed"]
    assert body["secret"].startswith("whsec_")
    assert len(base64.b64decode(body["secret"].removeprefix("whsec_"))) >= 24

    listed = await dev_api.get("/v1/webhook-endpoints", headers=bearer(client_key))
    one = await dev_api.get(f"/v1/webhook-endpoints/{body['id']}", headers=bearer(client_key))
    assert listed.status_code == one.status_code == 200
    assert [endpoint["id"] for endpoint in listed.json()["data"]] == [body["id"]]
    assert body["secret"] not in listed.text
    assert body["secret"] not in one.text
    assert one.json()["disabled_at"] is None


async def test_two_registrations_get_different_secrets(
    dev_api: httpx.AsyncClient, client_key: str
) -> None:
    first = (await register(dev_api, client_key)).json()
    second = (await register(dev_api, client_key)).json()
    assert first["secret"] != second["secret"]


@pytest.mark.parametrize(
    "events",
    [[], ["order.shipped"], ["order.confirmed", "ORDER.CONFIRMED"], "order.confirmed"],
)
async def test_events_must_be_a_non_empty_list_of_known_types(
    dev_api: httpx.AsyncClient, client_key: str, events: Any
) -> None:
    response = await dev_api.post(
        "/v1/webhook-endpoints",
        json={"url": RECEIVER, "events": events},
        headers=bearer(client_key),
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    "url",
    [
        "http://shop.example.com/hooks",  # not https
        "ftp://shop.example.com/hooks",
        "https://127.0.0.1/hooks",  # loopback
        "https://localhost:8443/hooks",  # resolves to loopback
        "https://[::1]/hooks",
        "https://10.1.2.3/hooks",  # private
        "https://192.168.0.10/hooks",
        "https://169.254.169.254/latest/meta-data",  # link-local (cloud metadata)
        "https://[::ffff:10.0.0.1]/hooks",  # private, written as IPv6
        "https://100.64.0.1/hooks",  # shared address space
        "https://0.0.0.0/hooks",
        "https://user:pass@127.0.0.1/hooks",
        "not a url",
    ],
)
async def test_urls_that_are_not_https_on_a_public_address_are_refused(
    api: httpx.AsyncClient, client_key: str, url: str
) -> None:
    response = await register(api, client_key, url=url)

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["loc"] == ["body", "url"]
    listed = await api.get("/v1/webhook-endpoints", headers=bearer(client_key))
    assert listed.json()["data"] == []


async def test_allowing_private_networks_allows_http_and_loopback(
    dev_api: httpx.AsyncClient, client_key: str
) -> None:
    for url in ("http://127.0.0.1:8000/hooks", "http://localhost:8000/hooks"):
        assert (await register(dev_api, client_key, url=url)).status_code == 201


async def test_another_clients_endpoints_are_not_found(
    dev_api: httpx.AsyncClient, client_key: str, other_client_key: str
) -> None:
    endpoint_id = (await register(dev_api, client_key)).json()["id"]
    path = f"/v1/webhook-endpoints/{endpoint_id}"
    other = bearer(other_client_key)

    answers = [
        await dev_api.get(path, headers=other),
        await dev_api.delete(path, headers=other),
        await dev_api.post(f"{path}/rotate-secret", headers=other),
        await dev_api.post(f"{path}/enable", headers=other),
        await dev_api.get(f"{path}/deliveries", headers=other),
    ]

    assert [answer.status_code for answer in answers] == [404] * 5
    assert all(a.headers["content-type"] == "application/problem+json" for a in answers)
    listed = await dev_api.get("/v1/webhook-endpoints", headers=other)
    assert listed.json()["data"] == []
    assert (await dev_api.get(path, headers=bearer(client_key))).status_code == 200


async def test_a_deleted_endpoint_is_gone(dev_api: httpx.AsyncClient, client_key: str) -> None:
    endpoint_id = (await register(dev_api, client_key)).json()["id"]
    path = f"/v1/webhook-endpoints/{endpoint_id}"

    deleted = await dev_api.delete(path, headers=bearer(client_key))

    assert deleted.status_code == 204
    assert deleted.content == b""
    assert (await dev_api.get(path, headers=bearer(client_key))).status_code == 404
    assert (await dev_api.delete(path, headers=bearer(client_key))).status_code == 404


async def test_rotating_answers_a_new_secret_and_when_the_old_one_stops_signing(
    dev_api: httpx.AsyncClient, client_key: str
) -> None:
    created = (await register(dev_api, client_key)).json()

    rotated = await dev_api.post(
        f"/v1/webhook-endpoints/{created['id']}/rotate-secret", headers=bearer(client_key)
    )

    assert rotated.status_code == 200, rotated.text
    body = rotated.json()
    assert body["id"] == created["id"]
    assert body["secret"].startswith("whsec_")
    assert body["secret"] != created["secret"]
    assert body["previous_secret_expires_at"] > created["created_at"]


async def test_endpoints_need_an_api_key(dev_api: httpx.AsyncClient) -> None:
    response = await dev_api.get("/v1/webhook-endpoints")
    assert response.status_code == 401


async def test_secrets_never_reach_the_logs(dev_api: httpx.AsyncClient, client_key: str) -> None:
    with capture_logs() as logs:
        created = (await register(dev_api, client_key)).json()
        rotated = (
            await dev_api.post(
                f"/v1/webhook-endpoints/{created['id']}/rotate-secret",
                headers=bearer(client_key),
            )
        ).json()
    logged = repr(logs)
    assert "webhook_endpoint_created" in logged
    assert created["secret"] not in logged
    assert rotated["secret"] not in logged
