"""How `ordersctl` shows what it reads: rich tables, `--json`, and `--watch`."""

from dataclasses import asdict, is_dataclass
from datetime import datetime
from typing import Any


def jsonable(value: Any) -> Any:
    """Dataclasses, datetimes and containers as JSON-ready values (for `--json`)."""
    if is_dataclass(value) and not isinstance(value, type):
        return jsonable(asdict(value))
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value
