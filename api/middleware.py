"""Pure ASGI middleware. `@app.middleware("http")` wraps every request in BaseHTTPMiddleware,
which costs several times more per request and breaks contextvars; these do not."""

import re
import secrets
import time

import structlog
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import problem
from kit.metrics import REQUEST_DURATION

log = structlog.get_logger("api.requests")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_UNMATCHED = "<unmatched>"
_EXTRA_HEADERS = "response_headers"


def add_response_headers(scope: Scope, headers: list[tuple[bytes, bytes]]) -> None:
    """Headers for whatever response this request gets, a problem+json included (the rate
    limit's fields): RequestContextMiddleware adds them as the response starts."""
    if headers:
        scope["state"].setdefault(_EXTRA_HEADERS, []).extend(headers)


class RequestContextMiddleware:
    """Times each request (X-Process-Time and the latency histogram), logs slow ones, and gives
    each a request id.

    The request id comes from a well-formed incoming X-Request-ID or is made here; it is bound to
    the structlog context, returned in the response and stored with orders so that the jobs an
    order causes log it too.
    """

    def __init__(self, app: ASGIApp, slow_request_s: float) -> None:
        self.app = app
        self.slow_request_s = slow_request_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _incoming_request_id(scope) or secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.bind_contextvars(request_id=request_id)
        status_code = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
                elapsed = time.perf_counter() - started
                headers = list(message.get("headers", ()))
                headers.append((b"x-process-time", f"{elapsed:.4f}".encode()))
                headers.append((b"x-request-id", request_id.encode()))
                headers.extend(scope["state"].get(_EXTRA_HEADERS, ()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            elapsed = time.perf_counter() - started
            # The route template (`/v1/orders/{order_id}`), never the raw path: one series per
            # route, not per order. The router has put the matched route into the scope by now.
            route = getattr(scope.get("route"), "path", _UNMATCHED)
            REQUEST_DURATION.labels(scope["method"], route, str(status_code)).observe(elapsed)
            if elapsed > self.slow_request_s:
                log.warning(
                    "slow_request",
                    method=scope["method"],
                    path=scope["path"],
                    status=status_code,
                    duration_s=round(elapsed, 4),
                )
            structlog.contextvars.unbind_contextvars("request_id")


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            return candidate if _REQUEST_ID.match(candidate) else None
    return None


class BodySizeLimitMiddleware:
    """Refuses bodies over `max_bytes` with 413 before they are read into memory.

    A declared Content-Length is checked up front (the server holds the client to it). A body
    without one (chunked) is read here up to the limit and then replayed to the app.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                if value.isdigit() and int(value) > self.max_bytes:
                    await _too_large(scope, receive, send, self.max_bytes)
                    return
                await self.app(scope, receive, send)
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _too_large(scope, receive, send, self.max_bytes)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)


async def _too_large(scope: Scope, receive: Receive, send: Send, max_bytes: int) -> None:
    # Through the one problem+json renderer, so that it carries `instance` like every error.
    response = problem(
        Request(scope),
        413,
        "Content too large",
        f"The request body is larger than {max_bytes} bytes.",
        headers={"Connection": "close"},
    )
    await response(scope, receive, send)
