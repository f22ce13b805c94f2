"""The alert levels of a queue against its thresholds (what `ordersctl queue` exits with)."""

from ops.health import QUEUE_THRESHOLDS, Level, QueueThresholds, grade, queue_health
from ops.queue import QueueStats


def test_a_value_is_graded_critical_first_then_warning_and_none_is_ok() -> None:
    assert grade(10, warn=5, crit=10) is Level.CRITICAL
    assert grade(5, warn=5, crit=10) is Level.WARNING
    assert grade(4, warn=5, crit=10) is Level.OK
    assert grade(None, warn=0, crit=0) is Level.OK
    assert grade(10**9, warn=None, crit=None) is Level.OK


def test_a_queue_is_as_bad_as_its_worst_check_and_names_each_breach() -> None:
    stats = QueueStats(queue="q", queued=1_000, oldest_due_age_s=301, last_hour={"failed": 3})

    graded = queue_health(stats, QueueThresholds(warn_failed=3))

    assert graded.level is Level.CRITICAL
    assert graded.breaches == {
        "oldest_due_age": Level.CRITICAL,
        "queued": Level.WARNING,
        "failed_last_hour": Level.WARNING,
    }


def test_an_idle_queue_is_ok_and_failures_are_not_graded_by_default() -> None:
    stats = QueueStats(queue="q", last_hour={"failed": 10**6})

    graded = queue_health(stats, QUEUE_THRESHOLDS)

    assert graded.level is Level.OK
    assert graded.breaches == {}
    assert [level.label for level in Level] == ["ok", "warning", "critical", "unknown"]
