"""The confirmation email: sent once per confirmed order, and recorded when sent."""

import asyncio
from collections.abc import Sequence

import asyncpg

from kit.db import connection
from kit.errors import PermanentJobError
from kit.settings import Settings
from shop.fulfilment.mail import Mailer, confirmation_message
from shop.jobs.names import JobName, job_id_prefix
from shop.jobs.outcomes import OrderOutcomes
from shop.models import OrderStatus
from shop.orders import repository as orders_repo
from shop.orders.schemas import OrderPublic


async def send_confirmations(
    pool: asyncpg.Pool,
    settings: Settings,
    mailer: Mailer,
    order_ids: Sequence[int],
    *,
    skip_dead: bool = False,
) -> OrderOutcomes[bool]:
    """Sends each order's confirmation unless it was sent already or the order is no longer
    confirmed; returns, order by order, whether an email went out, or what failed it.

    The emails go out together, as many at a time as the mailer has connections, and are
    recorded together once sent, in one statement. An order whose email another job is sending
    right now is left to it (see orders_repo.try_lock_confirmations); with `skip_dead`, so is an
    order whose confirmation job is recorded as dead (a batch retried for its other
    orders). If the process dies
    after the SMTP server accepted messages and before their record, the job runs again and
    those emails are sent twice (up to a batch of them); the stable Message-ID lets mail
    systems recognise the copies.
    """
    outcomes: OrderOutcomes[bool] = OrderOutcomes()
    async with connection(pool, settings.db_pool_acquire_timeout_s) as conn:
        locked: list[int] = []
        try:
            locked = await orders_repo.try_lock_confirmations(conn, order_ids)
            prefix = job_id_prefix(JobName.SEND_CONFIRMATION) if skip_dead else None
            orders = await orders_repo.get_many(conn, locked, dead_job_prefix=prefix)
            held = set(locked)
            due: list[OrderPublic] = []
            for order_id in order_ids:
                if order_id not in held:
                    outcomes.done[order_id] = False  # another job has it in hand
                elif order_id not in orders:
                    outcomes.failed[order_id] = _missing(order_id)
                else:
                    order, dead = orders[order_id]
                    if (
                        dead
                        or order.status is not OrderStatus.CONFIRMED
                        or order.confirmation_sent_at is not None
                    ):
                        outcomes.done[order_id] = False
                    else:
                        due.append(order)
            if due:
                await _send(conn, settings, mailer, due, outcomes)
        finally:
            await _unlock(conn)
    return outcomes


async def _send(
    conn: asyncpg.Connection,
    settings: Settings,
    mailer: Mailer,
    orders: list[OrderPublic],
    outcomes: OrderOutcomes[bool],
) -> None:
    """Sends, then records the sent in one statement; a failed send fails only its order."""
    sent: list[int] = []

    async def send_one(order: OrderPublic) -> None:
        try:
            await mailer.send(confirmation_message(order, settings))
        except Exception as exc:
            outcomes.failed[order.id] = exc
        else:
            sent.append(order.id)

    try:
        async with asyncio.TaskGroup() as sending:
            for order in orders:
                sending.create_task(send_one(order))
    finally:
        # Also when the sends are cut short (the job's timeout), so that its retry does not
        # send these again.
        if sent:
            await orders_repo.mark_confirmations_sent(conn, sent)
    outcomes.done.update(dict.fromkeys(sent, True))


async def _unlock(conn: asyncpg.Connection) -> None:
    """Lets go of the locks, or ends the session if that cannot be done: a pooled connection
    that kept them would keep other jobs from these orders for as long as it lives."""
    try:
        await orders_repo.unlock_confirmations(conn)
    except BaseException:
        conn.terminate()
        raise


def _missing(order_id: int) -> PermanentJobError:
    """The failure of an order that does not exist, raised here so that it carries a traceback."""
    try:
        raise PermanentJobError(f"order {order_id} does not exist")
    except PermanentJobError as exc:
        return exc
