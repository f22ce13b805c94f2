"""Personal data masked out of what operators are shown of jobs (arguments, results, errors)."""

import re
from typing import Any

# Job arguments are ids by design (see shop.jobs.names), but a retried or hand-enqueued job could
# carry anything: whatever looks like personal data is masked before it is shown.
_PERSONAL_KEYS = frozenset(
    {"email", "customer", "customer_email", "customer_name", "name", "phone", "address"}
)
_EMAIL = re.compile(r"[^\s@'\"<>(),;]+@[^\s@'\"<>(),;]+")
REDACTED = "[redacted]"


def redact(value: Any) -> Any:
    """A JSON-friendly copy of `value` with personal data masked."""
    if isinstance(value, dict):
        return {
            str(key): REDACTED if str(key).lower() in _PERSONAL_KEYS else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple | set):
        return [redact(item) for item in value]
    if isinstance(value, str):
        return redact_text(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact_text(repr(value))


def redact_text(text: str) -> str:
    return _EMAIL.sub(REDACTED, text)
