"""`ordersctl health` (ordersctl/commands/health.py), and commands when a service is down."""

from typing import Any

from tests.ordersctl.fixtures import Jobs, ctl, ctl_json


async def test_health_is_unhealthy_without_workers_and_healthy_when_none_are_required(
    every_state: Jobs,
) -> None:
    unhealthy = await ctl_json("health", code=2)
    healthy = await ctl_json("health", "--min-workers", "0")

    assert unhealthy["healthy"] is False
    assert unhealthy["checks"]["workers"]["ok"] is False
    assert unhealthy["checks"]["postgres"]["ok"] is True
    assert unhealthy["checks"]["redis"]["ok"] is True
    assert healthy["healthy"] is True
    lagging = await ctl_json("health", "--min-workers", "0", "--max-outbox-lag", "0", code=2)
    assert lagging["checks"]["outbox"]["ok"] is False


async def test_health_reports_redis_down_and_queue_says_unknown(
    every_state: Jobs, redis_service: Any
) -> None:
    redis_service.stop()
    try:
        report = await ctl_json("health", "--min-workers", "0", code=2)
        table = await ctl("health", "--min-workers", "0")
        queue = await ctl("queue")
    finally:
        redis_service.start()

    assert report["checks"]["redis"]["ok"] is False
    assert report["checks"]["workers"]["ok"] is False
    assert report["checks"]["postgres"]["ok"] is True
    assert table.exit_code == 2
    assert "UNHEALTHY" in table.stdout
    assert queue.exit_code == 3
    assert "a service is unavailable" in queue.stderr


async def test_health_reports_postgres_down(every_state: Jobs, pg_service: Any) -> None:
    pg_service.stop()
    try:
        report = await ctl_json("health", "--min-workers", "0", code=2)
    finally:
        pg_service.start()

    assert report["checks"]["postgres"] == {
        "ok": False,
        "detail": "unavailable: ServiceUnavailable",
    }
    assert report["checks"]["outbox"]["ok"] is False
    assert report["checks"]["redis"]["ok"] is True
