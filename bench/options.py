"""What one benchmark run measures and for how long: set from the command line (bench.__main__)."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Options:
    rounds: int
    seconds: float
    warmup_s: float
    e2e_orders: int
    e2e_rounds: int
    soak_s: float
    smoke: bool
    crash_recovery_wait_s: float
    # Orders per second the soak places; None: SOAK_DEFAULT_ORDER_RATE.
    soak_order_rate: float | None = None
    # The flash sale's seconds of reads only, of the sale itself, and of each reference run.
    flash_before_s: float = 5.0
    flash_sale_s: float = 15.0
    flash_reference_s: float = 10.0
    # Connections placing orders in the flash sale (32; fewer in a smoke run, whose backlog the
    # pipeline then drains in seconds).
    flash_order_connections: int = 32
    # Seconds of orders in each run of the webhooks phase's with/without comparison.
    webhook_pipeline_s: float = 10.0
    # Seconds of orders in the capacity phase (the per-order costs docs/capacity.md scales).
    capacity_s: float = 15.0
    # Scenario names to run, plus "queues", "soak", "flash_sale", "webhooks" and "capacity" for
    # those phases; empty: everything.
    only: frozenset[str] = frozenset()
    # The retention soak's length; it runs only when named in `only` ("retention").
    retention_s: float = 180.0

    def wants(self, name: str) -> bool:
        return not self.only or name in self.only
