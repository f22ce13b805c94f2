"""The per-key rate limit: 429 problem+json with Retry-After, one bucket per API key."""

import asyncio
import re
from collections.abc import Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
from redis.asyncio import Redis

from api.rate_limit import _GCRA_SHA
from kit.metrics import RATE_LIMIT_FALLBACKS
from kit.settings import Settings
from shop.catalogue.schemas import ProductPublic
from tests.app_fixtures import api_with, bearer

MakeProduct = Callable[..., Coroutine[Any, Any, ProductPublic]]


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


# RFC 8941 items as draft-ietf-httpapi-ratelimit-headers writes them: a policy name, then
# integer parameters.
_FIELD = re.compile(r'^"(?P<policy>[a-z0-9_-]+)"(?P<params>(;[a-z]+=[0-9]+)+)$')


def cluster_limited(
    settings: Settings, *, burst: int
) -> AbstractAsyncContextManager[httpx.AsyncClient]:
    """An app of its own with the cluster limit: `burst` requests at once, then one per 5 s.

    Redis gets a second to answer: on a busy test machine a call can outlast the default 50 ms,
    and a request that falls back is counted by its process alone.
    """
    return api_with(
        settings,
        rate_limit_scope="cluster",
        rate_limit_per_s=0.2,
        rate_limit_burst=burst,
        rate_limit_redis_timeout_s=1.0,
    )


def field(value: str) -> dict[str, Any]:
    match = _FIELD.fullmatch(value)
    assert match is not None, value
    params = dict(part.split("=") for part in match["params"].lstrip(";").split(";"))
    return {"policy": match["policy"], **{name: int(number) for name, number in params.items()}}


async def test_two_apps_on_one_redis_admit_the_limit_together_not_each(
    settings: Settings, client_key: str, make_product: MakeProduct
) -> None:
    product = await make_product()
    path = f"/v1/products/{product.id}"
    limited = {"rate_limit_per_s": 0.2, "rate_limit_burst": 4, "rate_limit_redis_timeout_s": 1.0}

    async def statuses(scope: str) -> list[int]:
        async with (
            api_with(settings, rate_limit_scope=scope, **limited) as one,
            api_with(settings, rate_limit_scope=scope, **limited) as two,
        ):
            # Alternating, so that both the route and the cached read answer from each app.
            return [
                (await app.get(path, headers=bearer(client_key))).status_code
                for app in [one, two] * 6
            ]

    cluster = await statuses("cluster")
    process = await statuses("process")

    assert cluster.count(200) == 4
    assert cluster[4:] == [429] * 8
    # The process scope, for contrast: each app admits the whole burst.
    assert process.count(200) == 8


async def test_with_redis_down_each_app_limits_alone_and_requests_are_served(
    settings: Settings, client_key: str, redis_service: Any
) -> None:
    fallbacks_before = RATE_LIMIT_FALLBACKS._value.get()
    async with cluster_limited(settings, burst=3) as api:
        redis_service.stop()
        try:
            statuses = [
                (await api.get("/v1/orders", headers=bearer(client_key))).status_code
                for _ in range(4)
            ]
        finally:
            redis_service.start()

    assert statuses == [200, 200, 200, 429]
    # Counted, and not once a request: Redis is tried again a second later, not each time.
    assert 1 <= RATE_LIMIT_FALLBACKS._value.get() - fallbacks_before < len(statuses)


async def test_a_429_carries_retry_after_and_the_ratelimit_fields_as_problem_json(
    settings: Settings, client_key: str
) -> None:
    async with cluster_limited(settings, burst=3) as api:
        responses = [await api.get("/v1/orders", headers=bearer(client_key)) for _ in range(4)]

    well_within, _, last, refused = responses
    assert "ratelimit" not in well_within.headers
    # The last of the burst: nothing left, the whole burst back in 3 intervals of 5 s.
    assert field(last.headers["ratelimit-policy"]) == {"policy": "default", "q": 3, "w": 15}
    assert field(last.headers["ratelimit"]) == {"policy": "default", "r": 0, "t": 15}
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["retry-after"] == "5"
    assert field(refused.headers["ratelimit"])["r"] == 0
    assert field(refused.headers["ratelimit-policy"])["q"] == 3


async def test_a_redis_that_lost_the_script_is_sent_it_again(
    settings: Settings, client_key: str, redis_service: Any
) -> None:
    async with cluster_limited(settings, burst=2) as api:
        first = await api.get("/v1/orders", headers=bearer(client_key))
        redis = Redis.from_url(settings.redis_url.get_secret_value())
        try:
            await redis.script_flush()
            second = await api.get("/v1/orders", headers=bearer(client_key))
            third = await api.get("/v1/orders", headers=bearer(client_key))
            scripts = await redis.script_exists(_GCRA_SHA)
        finally:
            await redis.aclose()

    assert [first.status_code, second.status_code, third.status_code] == [200, 200, 429]
    assert scripts == [True]


async def test_requests_that_ask_together_share_a_call_and_still_get_the_limit(
    settings: Settings, client_key: str, other_client_key: str
) -> None:
    async with cluster_limited(settings, burst=4) as api:
        await api.get("/v1/orders", headers=bearer(other_client_key))  # the key cache, warmed
        responses = await asyncio.gather(
            *(
                api.get("/v1/orders", headers=bearer(key))
                for key in [client_key] * 10 + [other_client_key] * 2
            )
        )

    statuses = [response.status_code for response in responses]
    assert statuses[:10].count(200) == 4
    assert statuses[10:] == [200, 200]
