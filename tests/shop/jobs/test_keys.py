"""The Redis keys workers write: their formats stay, as running workers and ops read them."""

from shop.jobs.keys import (
    JobOutcome,
    outcome_counter_key,
    outcome_field,
    parse_outcome_field,
    worker_key_prefix,
)


def test_the_key_formats_are_those_running_workers_write() -> None:
    assert outcome_counter_key("orders:queue", 29_000_000) == "orders:queue:stats:29000000"
    assert worker_key_prefix("orders:queue") == "orders:queue:worker:"
    assert outcome_field(JobOutcome.CANCELLED, "reserve_inventory") == "cancelled:reserve_inventory"
    assert [outcome.value for outcome in JobOutcome] == [
        "complete",
        "retried",
        "failed",
        "cancelled",
    ]


def test_an_outcome_field_reads_back_as_outcome_and_function() -> None:
    field = outcome_field(JobOutcome.RETRIED, "send_confirmation")

    assert parse_outcome_field(field) == ("retried", "send_confirmation")
