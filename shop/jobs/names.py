"""The contract between the code that asks for work and the worker that does it.

Jobs take ids, never objects, and their ids are derived from what they work on, so that handing
the same job to the queue twice (an outbox re-delivery) is deduplicated by ARQ.
"""

from enum import StrEnum
from typing import Any


class JobName(StrEnum):
    RESERVE_INVENTORY = "reserve_inventory"
    SEND_CONFIRMATION = "send_confirmation"
    # Called with a delivery id and a try number, never with an order id (shop.webhooks).
    DELIVER_WEBHOOK = "deliver_webhook"


def job_id_prefix(function: JobName) -> str:
    """What precedes the order id in a job id; SQL that writes outbox rows appends the id itself."""
    return f"{function.value}:"


def job_id_for(function: JobName, order_id: int) -> str:
    return f"{job_id_prefix(function)}{order_id}"


def order_id_of(args: list[Any]) -> int | None:
    """The order a job works on: jobs take the order id first."""
    first = args[0] if args else None
    return first if isinstance(first, int) and not isinstance(first, bool) else None
