"""How operator views put values into words, the same in `ordersctl` and the console."""

import json
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


def age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def when(value: datetime | None) -> str:
    return "" if value is None else value.isoformat(timespec="seconds")


def short(value: Any, width: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(jsonable(value))
    return text if len(text) <= width else text[: width - 1] + "…"
