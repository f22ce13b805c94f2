"""The contract between the code that asks for work and the worker that does it.

Jobs take ids, never objects, and their ids are derived from what they work on, so that handing
the same job to the queue twice (an outbox re-delivery) is deduplicated by ARQ.

Each outbox row is one order's job (`reserve_inventory:42`); the relay hands several rows of one
function to the queue as one batch job, called with the list of their order ids and named after
the rows (`batch_job_id`). A batch of one row keeps the row's own job id and the single-order
call form, which every job also accepts from before batching.
"""

import hashlib
from collections.abc import Sequence
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


def batch_job_id(function: str, outbox_ids: Sequence[int]) -> str:
    """One id per set of outbox rows, whatever their order: a second hand-over of the same rows
    is dropped by ARQ, any other set of rows is a job of its own. Readable: the first row's id
    and how many rows, then a digest of all of them."""
    ids = sorted(outbox_ids)
    digest = hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()[:16]
    return f"{function}:batch-{ids[0]}+{len(ids)}-{digest}"


def order_id_of(args: list[Any]) -> int | None:
    """The order a job works on: jobs take the order id first."""
    first = args[0] if args else None
    return first if isinstance(first, int) and not isinstance(first, bool) else None
