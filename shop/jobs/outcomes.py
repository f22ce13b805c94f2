"""What a job over several orders reports: each order's result, or what failed that order.

One order's failure is its own: the job wrapper (worker.tasks) records an order that failed for
good as a dead job under that order's job id, retries the job for one that failed transiently,
and lets every other order's result stand.
"""

from dataclasses import dataclass, field
from typing import Generic, TypeVar

R = TypeVar("R")


@dataclass(slots=True)
class OrderOutcomes(Generic[R]):
    done: dict[int, R] = field(default_factory=dict)
    failed: dict[int, Exception] = field(default_factory=dict)

    def fail(self, order_id: int, exc: Exception) -> None:
        self.done.pop(order_id, None)
        self.failed[order_id] = exc

    def update(self, other: "OrderOutcomes[R]") -> None:
        self.done.update(other.done)
        self.failed.update(other.failed)
