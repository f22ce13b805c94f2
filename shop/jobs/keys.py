"""What the workers write to Redis about the jobs they run, and operators read back.

ARQ keeps its own keys (`arq.constants`); these are this codebase's, next to them in the same
Redis. Running workers write them, so their formats are kept as they are.
"""

from enum import StrEnum


class JobOutcome(StrEnum):
    """How one run of a job ended, as counted by the worker and shown by `ordersctl`."""

    COMPLETE = "complete"
    RETRIED = "retried"
    FAILED = "failed"
    # Aborted by an operator, stopped by ARQ's timeout, or interrupted by a shutdown (then
    # re-queued).
    CANCELLED = "cancelled"


# Outcome counters: one small hash per queue and minute, "<outcome>:<function>" -> count, kept two
# hours. ARQ's results would also tell, but counting them means reading every result of the last
# 24 hours; these are 60 HGETALLs in one round trip.
STATS_TTL_S = 2 * 3600


def outcome_counter_key(queue: str, minute: int) -> str:
    return f"{queue}:stats:{minute}"


# Beside them, kept as long: "<function>" -> the milliseconds its runs ended that minute took, so
# that a minute's mean run time is this over the minute's outcome counts of the function.
def run_time_key(queue: str, minute: int) -> str:
    return f"{queue}:runtime:{minute}"


def outcome_field(outcome: JobOutcome, function: str) -> str:
    return f"{outcome.value}:{function}"


def parse_outcome_field(field: str) -> tuple[str, str]:
    """(outcome, function) of an outcome counter's field."""
    outcome, _, function = field.partition(":")
    return outcome, function


# Per-worker heartbeats, `<prefix><worker id>` (ARQ's own health check is one key per queue,
# overwritten by every worker).
def worker_key_prefix(queue: str) -> str:
    return f"{queue}:worker:"


# An order whose confirmation email a job is sending: that job's id, from before it reads whether
# the email is due until the send is recorded (shop.fulfilment.confirmation).
def confirmation_claim_key(queue: str, order_id: int) -> str:
    return f"{queue}:sending:{order_id}"
