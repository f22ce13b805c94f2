"""`ordersctl order` (ordersctl/commands/orders.py)."""

import asyncpg

from kit.settings import Settings
from shop.jobs import retention
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


async def test_an_order_past_the_outbox_retention_says_its_history_was_purged(
    every_state: Jobs, settings: Settings, db: asyncpg.Pool
) -> None:
    order_id = every_state.confirmed_order
    within = await ctl_json("order", str(order_id))
    aged = settings.outbox_retention_s + 60
    await db.execute(
        "UPDATE orders SET created_at = created_at - make_interval(secs => $1) WHERE id = $2",
        float(aged),
        order_id,
    )
    await db.execute(
        "UPDATE outbox SET delivered_at = delivered_at - make_interval(secs => $1)"
        " WHERE order_id = $2",
        float(aged),
        order_id,
    )
    assert await retention.purge_outbox(db, settings, budget_s=5) >= 2

    past = await ctl_json("order", str(order_id))
    table = await ctl("order", str(order_id))

    assert "history purged" not in [event["event"] for event in within["events"]]
    events = {event["event"]: event["detail"] for event in past["events"]}
    assert past["status"] == "confirmed"
    assert "job written to outbox" not in events
    assert "OUTBOX_RETENTION_S" in events["history purged"]
    assert {"placed", "confirmed", "email sent"} <= events.keys()
    assert table.exit_code == 0
    assert "history purged" in table.stdout
