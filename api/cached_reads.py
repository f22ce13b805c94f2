"""Cached product reads answered before FastAPI's routing: the hot path of a read-heavy catalogue.

`GET /v1/products/{id}` is the busiest request a storefront makes, and once the product is in
this process's catalogue tier the answer is bytes in a dict. FastAPI would still route it, solve
its dependencies and build a response object around those bytes, at several times the cost of the
lookup itself (docs/decisions/0007-cached-reads-before-routing.md). This layer serves the request
only when every step is already decided in memory, and hands everything else to FastAPI unchanged:

- the method is GET and the path is exactly a product's;
- the bearer key is in the authenticator's cache as a valid key (an unknown, expired or revoked
  key goes to FastAPI, which looks it up and answers 401 itself);
- the product is in the in-process catalogue tier (which keeps the read-after-write guarantee,
  shop/catalogue/cache.py);
- the key is within its rate (decided in memory, or by one Redis round trip with
  RATE_LIMIT_SCOPE=cluster); FastAPI refuses it otherwise (a refused request does not count).

The response is the one FastAPI's route sends, byte for byte (tests/api/test_cached_reads.py);
the request id, X-Process-Time, the latency histogram and the slow-request log come from
RequestContextMiddleware, outside this layer.
"""

import re
from typing import TYPE_CHECKING

from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from api.middleware import add_response_headers
from shop.catalogue import service as catalogue

if TYPE_CHECKING:
    from api.deps import AppState

_PRODUCT_PATH = re.compile(r"/v1/products/([1-9][0-9]{0,17})")
_JSON = (b"content-type", b"application/json")


class CachedProductReads:
    def __init__(self, app: ASGIApp, route: BaseRoute) -> None:
        self.app = app
        # Put into the scope as FastAPI's router would, for the latency histogram's route label.
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        payload = await self._cached(scope) if scope["type"] == "http" else None
        if payload is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = self.route
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(len(payload)).encode()), _JSON],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    @staticmethod
    async def _cached(scope: Scope) -> bytes | None:
        if scope["method"] != "GET":
            return None
        match = _PRODUCT_PATH.fullmatch(scope["path"])
        if match is None:
            return None
        api_key = _bearer_credentials(scope)
        if api_key is None:
            return None
        state: AppState = scope["app"].state.orders
        client = state.authenticator.cached_client(api_key)
        if client is None:
            return None
        payload = catalogue.local_product_json(state.cache, int(match[1]))
        if payload is None:
            return None
        decision = await state.rate_limiter.acquire(client.id)
        if decision.wait_s > 0:
            # Refused requests do not count: the route asks again and answers the 429.
            return None
        add_response_headers(scope, state.rate_limiter.gcra.headers(decision))
        state.cache.count_local_hit()
        return payload


def _bearer_credentials(scope: Scope) -> str | None:
    """The key of `Authorization: Bearer <key>`, parsed as FastAPI's HTTPBearer parses it."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            header: str = value.decode("latin-1")
            scheme, _, credentials = header.partition(" ")
            credentials = credentials.strip()
            if scheme.lower() != "bearer" or not credentials:
                return None
            return credentials
    return None
