"""Every error leaves the API as RFC 9457 problem+json; tracebacks never do."""

from http import HTTPStatus
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.schemas import Problem
from kit.db import CONTENTION_ERRORS, UNAVAILABLE_ERRORS
from kit.errors import DomainError

log = structlog.get_logger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_MEDIA_TYPE


Responses = dict[int | str, dict[str, Any]]


def _problem_doc(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "model": Problem,
        "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


# Documented on every route, so that clients and schema checkers know what errors look like.
COMMON_PROBLEMS: Responses = {
    400: _problem_doc("Malformed request"),
    401: _problem_doc("Missing or unknown API key"),
    413: _problem_doc("Request body too large"),
    422: _problem_doc("Invalid input; nothing was written"),
    429: {
        **_problem_doc("Over the API key's rate limit; retry after the Retry-After delay"),
        "headers": {
            "Retry-After": {
                "description": "Seconds until the next request fits",
                "schema": {"type": "integer"},
            },
            "RateLimit-Policy": {
                "description": 'The limit, e.g. `"default";q=20000;w=2`: a burst of q requests'
                " that refills in w seconds (draft-ietf-httpapi-ratelimit-headers); also sent"
                " on responses with less than a tenth of the burst left",
                "schema": {"type": "string"},
            },
            "RateLimit": {
                "description": 'What is left, e.g. `"default";r=0;t=2`: r requests at once, the'
                " whole burst again in t seconds",
                "schema": {"type": "string"},
            },
        },
    },
    503: _problem_doc("A dependency is unavailable; retry after the Retry-After delay"),
}
NOT_FOUND: Responses = {404: _problem_doc("No such resource (or not yours)")}
IN_PROGRESS: Responses = {
    409: _problem_doc("A request with the same Idempotency-Key is still running; retry shortly")
}
CANCEL_CONFLICT: Responses = {
    409: _problem_doc(
        "The order's state does not allow this, or a request with the same Idempotency-Key"
        " is still running"
    )
}
SKU_TAKEN: Responses = {409: _problem_doc("A product with this SKU exists already")}
FORBIDDEN: Responses = {403: _problem_doc("The API key is not an admin key")}


def problem(
    request: Request,
    status: int,
    title: str,
    detail: str | None = None,
    type_: str = "about:blank",
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> ProblemResponse:
    body: dict[str, Any] = {"type": type_, "title": title, "status": status}
    if detail is not None:
        body["detail"] = detail
    body["instance"] = request.url.path
    body.update(extensions)
    return ProblemResponse(body, status_code=status, headers=headers)


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    # "input" can echo personal data or megabytes back; "ctx" can hold exception objects.
    return [
        {"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "type": error.get("type")}
        for error in exc.errors()
    ]


async def _on_domain_error(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, DomainError)
    headers = None if exc.retry_after_s is None else {"Retry-After": str(exc.retry_after_s)}
    if exc.status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    return problem(
        request, exc.status, exc.title, exc.detail, exc.type, headers=headers, **exc.extensions
    )


async def _on_validation_error(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, RequestValidationError)
    errors = _validation_errors(exc)
    if any(error["type"] == "json_invalid" for error in errors):
        return problem(request, 400, "Malformed JSON", "The request body is not valid JSON.")
    return problem(
        request, 422, "Unprocessable content", "The request is not valid.", errors=errors
    )


async def _on_http_exception(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, StarletteHTTPException)
    return problem(
        request,
        exc.status_code,
        _title_for(exc.status_code),
        str(exc.detail),
        headers=dict(exc.headers) if exc.headers else None,
    )


async def _on_unavailable(request: Request, exc: Exception) -> ProblemResponse:
    log.warning("dependency_unavailable", error=repr(exc))
    return problem(
        request,
        503,
        "Service unavailable",
        "A dependency is unreachable; retry shortly.",
        headers={"Retry-After": "1"},
    )


async def _on_unexpected(request: Request, exc: Exception) -> ProblemResponse:
    log.exception("unhandled_error", path=request.url.path)
    return problem(request, 500, "Internal server error")


def _title_for(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, _on_domain_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    for error in (*UNAVAILABLE_ERRORS, *CONTENTION_ERRORS):
        app.add_exception_handler(error, _on_unavailable)
    app.add_exception_handler(Exception, _on_unexpected)
