"""`ordersctl top` (ordersctl/commands/top.py)."""

from tests.ordersctl.fixtures import Jobs, ctl


async def test_top_draws_the_overview_and_stops_after_its_iterations(every_state: Jobs) -> None:
    result = await ctl("top", "--iterations", "2", "--interval", "0.1")

    assert result.exit_code == 0, result.output
    assert "ordersctl top" in result.stdout
    assert "Workers (0 live)" in result.stdout
    assert every_state.dead in result.stdout
