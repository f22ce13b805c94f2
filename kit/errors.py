"""Domain errors. Each carries its HTTP status; the API renders them all as problem+json."""

from typing import Any


class DomainError(Exception):
    status: int = 400
    title: str = "Bad request"
    # A URI reference naming the problem type (RFC 9457 section 3.1.1).
    type: str = "about:blank"
    # When set, the answer carries `Retry-After` with this many seconds.
    retry_after_s: int | None = None

    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extensions = extensions


class Unauthorized(DomainError):
    status = 401
    title = "Unauthorized"


class Forbidden(DomainError):
    status = 403
    title = "Forbidden"


class NotFound(DomainError):
    status = 404
    title = "Not found"


class Conflict(DomainError):
    status = 409
    title = "Conflict"


class RequestInProgress(Conflict):
    """A request with the same Idempotency-Key is still running."""

    retry_after_s = 1


class InvalidRequest(DomainError):
    status = 422
    title = "Unprocessable content"


class TooManyRequests(DomainError):
    status = 429
    title = "Too many requests"

    def __init__(self, detail: str, retry_after_s: int, **extensions: Any) -> None:
        super().__init__(detail, **extensions)
        self.retry_after_s = retry_after_s


class ServiceUnavailable(DomainError):
    status = 503
    title = "Service unavailable"

    def __init__(self, detail: str, retry_after_s: int = 1, **extensions: Any) -> None:
        super().__init__(detail, **extensions)
        self.retry_after_s = retry_after_s


class PermanentJobError(Exception):
    """A job cannot succeed however often it runs (its order is gone, its data is bad)."""
