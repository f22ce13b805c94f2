"""Every figure one benchmark run collects, by phase; bench.report turns them into the page."""

from dataclasses import asdict, dataclass, field
from typing import Any

from bench.load import LoadResult


@dataclass
class Results:
    http: dict[str, list[LoadResult]] = field(default_factory=dict)
    loads: dict[str, list[float]] = field(default_factory=dict)
    jobs: dict[str, list[float]] = field(default_factory=dict)  # jobs per second per round
    orders_per_s: dict[str, list[float]] = field(default_factory=dict)
    done_ms: dict[str, list[float]] = field(default_factory=dict)
    crash: dict[str, dict[str, Any]] = field(default_factory=dict)
    memory: dict[str, Any] = field(default_factory=dict)
    flash_sale: dict[str, Any] = field(default_factory=dict)
    webhooks: dict[str, Any] = field(default_factory=dict)
    capacity: dict[str, Any] = field(default_factory=dict)
    retention: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    titles: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "http": {k: [asdict(r) for r in v] for k, v in self.http.items()},
            "loads": self.loads,
            "jobs": self.jobs,
            "orders_per_s": self.orders_per_s,
            "done_ms": self.done_ms,
            "crash": self.crash,
            "memory": self.memory,
            "flash_sale": self.flash_sale,
            "webhooks": self.webhooks,
            "capacity": self.capacity,
            "retention": self.retention,
            "notes": self.notes,
        }
