"""`ordersctl order` (ordersctl/commands/orders.py)."""

from tests.ordersctl.fixtures import Jobs, ctl, ctl_json


async def test_order_shows_the_timeline_of_states_jobs_and_email(every_state: Jobs) -> None:
    timeline = await ctl_json("order", str(every_state.confirmed_order))
    table = await ctl("order", str(every_state.confirmed_order))

    events = [event["event"] for event in timeline["events"]]
    assert timeline["status"] == "confirmed"
    assert events[0] == "placed"
    for expected in (
        "job written to outbox",
        "job handed to queue",
        "job started",
        "job complete",
        "confirmed",
        "email sent",
    ):
        assert expected in events
    assert [event["at"] for event in timeline["events"]] == sorted(
        event["at"] for event in timeline["events"]
    )
    assert events.index("confirmed") < events.index("email sent")
    assert {job["job_id"] for job in timeline["jobs"]} == set(every_state.complete)
    assert table.exit_code == 0
    assert "email sent" in table.stdout
    assert (await ctl("order", "424242")).exit_code == 1
