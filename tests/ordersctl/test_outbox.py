"""`ordersctl outbox` (ordersctl/commands/outbox.py)."""

from tests.ordersctl.fixtures import Jobs, ctl, ctl_json


async def test_outbox_shows_pending_rows_their_age_and_deliveries(every_state: Jobs) -> None:
    stats = await ctl_json("outbox")
    table = await ctl("outbox")

    # The waiting order's row was never relayed; the confirmed order's two were.
    assert stats["pending"] == 1
    assert stats["failing"] == 0
    assert 0 <= stats["oldest_pending_age_s"] < 60
    assert stats["delivered_last_5m"] == 2
    assert stats["delivered_last_1h"] == 2
    assert table.exit_code == 0
    assert "Outbox" in table.stdout
