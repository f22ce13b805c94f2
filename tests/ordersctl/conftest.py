"""The fixtures of the `ordersctl` tests (tests/ordersctl/fixtures.py)."""

from tests.ordersctl.fixtures import every_state

__all__ = ["every_state"]
