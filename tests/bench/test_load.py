"""The load scripts: what one scenario sends must never collide with what another sent."""

import re

from bench.load import one_line_orders, place_orders


def _tag(script: str) -> str:
    match = re.search(r'^local tag = "([^"]+)"$', script, re.MULTILINE)
    assert match is not None, script
    return match[1]


def test_order_scripts_with_the_same_run_tag_still_use_their_own_keys() -> None:
    first = place_orders("ord_key", "r0", 100, idempotency=True)
    second = place_orders("ord_key", "r0", 100, idempotency=True)

    assert _tag(first) != _tag(second)
    assert _tag(first).startswith("r0-")


def test_one_line_order_scripts_with_the_same_run_tag_still_use_their_own_keys() -> None:
    first = one_line_orders("ord_key", "sale", 51, 5)
    second = one_line_orders("ord_key", "sale", 51, 5)

    assert _tag(first) != _tag(second)
    assert "local product = 51 + (n % 5)" in first
