"""structlog set-up shared by every process: JSON lines, contextvars merged, secrets redacted."""

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from kit import tracing
from kit.settings import Settings

_SECRET_KEYS = frozenset(
    {
        "authorization",
        "api_key",
        "password",
        "database_url",
        "database_listen_url",
        "redis_url",
        "redis_sentinel_password",
    }
)


def _redact_secrets(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in _SECRET_KEYS.intersection(event):
        event[key] = "[redacted]"
    return event


def configure_logging(settings: Settings) -> None:
    level = logging.getLevelName(settings.log_level)
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if settings.log_format == "json"
        else structlog.dev.ConsoleRenderer()
    )
    processors: list[structlog.typing.Processor] = [structlog.contextvars.merge_contextvars]
    if tracing.enabled():
        # Only with tracing on: off, a line costs no lookup of a span that cannot exist.
        processors.append(tracing.add_trace_ids)
    structlog.configure(
        processors=[
            *processors,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact_secrets,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        # Not cached, so that structlog.testing.capture_logs() sees every logger in tests; nothing
        # logs on the hot path of a fast request, so the lookup costs nothing that matters.
        cache_logger_on_first_use=False,
    )
